package proxy

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/dso-proxy/dso/store"
)

// traceSpool keeps the traces the store could not take while it was away
// (Redis down), bounded by maxSpooledTraces, and offers them again, oldest
// first, until it takes them: a trace id handed out during an outage is
// not lost with it. It lives in memory: a restart during an outage loses
// what it holds (said at warn level). Only the trace writer touches
// traces; n is read by requests deciding whether to hand out an id.
type traceSpool struct {
	traces []store.Trace
	n      atomic.Int64
}

func (sp *traceSpool) len() int { return int(sp.n.Load()) }

// full reports whether the spool has no room: new traces would be lost,
// so requests get no trace id.
func (sp *traceSpool) full() bool { return sp.len() >= maxSpooledTraces }

// add spools a batch, if there is room for all of it.
func (sp *traceSpool) add(s *Server, batch []store.Trace) bool {
	if len(sp.traces)+len(batch) > maxSpooledTraces {
		return false
	}
	if len(sp.traces) == 0 {
		s.log.Warn("the store is away; keeping traces in memory until it returns", "max", maxSpooledTraces)
	}
	sp.keep(s, append(sp.traces, batch...))
	return true
}

// keep sets what is spooled, and what says how much.
func (sp *traceSpool) keep(s *Server, traces []store.Trace) {
	if len(traces) == 0 {
		traces = nil // the drained backing array goes
	}
	sp.traces = traces
	sp.n.Store(int64(len(traces)))
	s.metrics.traceSpooled.Set(float64(len(traces)))
}

// drain offers the spooled traces to the store, a batch at a time, and
// stops at the first the store still refuses.
func (sp *traceSpool) drain(s *Server, st Store) {
	for len(sp.traces) > 0 {
		batch := sp.traces[:min(len(sp.traces), maxTraceBatch)]
		ctx, cancel := context.WithTimeout(context.Background(), traceWriteTimeout)
		err := st.PutTraces(ctx, batch)
		cancel()
		if errors.Is(err, store.ErrUnavailable) {
			s.storeAway.Store(true)
			return
		}
		s.storeAway.Store(false)
		s.settleTraces(batch, err)
		sp.keep(s, sp.traces[len(batch):])
		if len(sp.traces) == 0 {
			s.log.Info("the store is back; spooled traces stored")
		}
	}
}

// lose gives up what is still spooled (at Close, with the store away).
func (sp *traceSpool) lose(s *Server) {
	if len(sp.traces) == 0 {
		return
	}
	s.settleTraces(sp.traces, errors.New("the store was still away at shutdown"))
	sp.keep(s, nil)
}
