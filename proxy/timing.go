package proxy

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"
)

// Retrieval stages, as metrics label them and Server-Timing names them.
const (
	stageEmbed  = "embed"
	stageAlign  = "align"
	stageSearch = "search"
	stageInject = "inject"
)

// timing is one chat request's time, decomposed: dso's retrieval stages,
// the backends' time to response headers, and what is left, dso's own.
// It goes out as a W3C Server-Timing header with the response header.
type timing struct {
	on                                     bool // a chat route: send it
	embed, align, search, inject, upstream time.Duration
	dso                                    time.Duration // set when the header goes out
	// body is the time spent waiting on the backend's body (attemptBody),
	// in nanoseconds: the backend's, not dso's, when dso reads an answer
	// whole before its own header goes out. Atomic: a translated stream
	// may be read beside the handler.
	body atomic.Int64
}

// observeStage records a retrieval stage in the metrics and the request's
// timing.
func (s *Server) observeStage(ctx context.Context, stage string, d time.Duration) {
	s.metrics.cached.stage.get(stage).Observe(d.Seconds())
	t := &info(ctx).timing
	switch stage {
	case stageEmbed:
		t.embed += d
	case stageAlign:
		t.align += d
	case stageSearch:
		t.search += d
	case stageInject:
		t.inject += d
	}
}

// header is the Server-Timing value for a response header sent elapsed
// after the request arrived: every stage with dur in milliseconds, 0 for
// a stage that did not run, the backends' time (to their headers, and
// waiting on their bodies before dso's header went out), and dso's own
// share of elapsed: all of it but the backends'.
func (t *timing) header(elapsed time.Duration) string {
	upstream := t.upstream + time.Duration(t.body.Load())
	t.dso = max(0, elapsed-upstream)
	var buf [192]byte // six metrics fit: one allocation, the string's
	b := buf[:0]
	for i, m := range [...]struct {
		name string
		d    time.Duration
	}{{stageEmbed, t.embed}, {stageAlign, t.align}, {stageSearch, t.search}, {stageInject, t.inject}, {"upstream", upstream}, {"dso", t.dso}} {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, m.name...)
		b = append(b, ";dur="...)
		b = strconv.AppendFloat(b, float64(m.d.Nanoseconds())/1e6, 'f', 3, 64)
	}
	return string(b)
}
