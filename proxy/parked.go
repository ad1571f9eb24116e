package proxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/store"
)

// feedbackParker is a store that replicas share and that keeps feedback
// for a trace another replica is still storing (*store.Redis): behind a
// load balancer a grade sent right after its answer may reach a replica
// that has not seen the trace, and must not be lost for that.
type feedbackParker interface {
	ParkFeedback(ctx context.Context, fb store.Feedback) error
	TakeParked(ctx context.Context, traceIDs []string) ([]store.Feedback, error)
}

// maxParkAge is how old a trace id may be for its feedback to be parked:
// a trace is stored within moments of its answer (or, from a spool, once
// the store is back, when parking had failed too). Older ids, and ids of
// no time at all, are unknown as before.
const maxParkAge = 5 * time.Minute

// parker is the shared store's parking, nil where there is none (one
// node's SQLite: a trace it does not know is unknown).
func (s *Server) parker() feedbackParker {
	lib := s.opts.Retrieval.Library
	if lib == nil {
		return nil
	}
	p, _ := storeOf(lib).(feedbackParker)
	return p
}

// traceTime is when the trace id was made (see newTraceID); false for an
// id of another shape.
func traceTime(id string) (time.Time, bool) {
	hexTime, ok := strings.CutPrefix(id, "tr_")
	if !ok || len(hexTime) != 32 {
		return time.Time{}, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(hexTime[:16])); err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:]))), true
}

// mayBeStoring reports whether another replica may still be storing the
// trace id: it was made moments ago.
func (s *Server) mayBeStoring(id string) bool {
	t, ok := traceTime(id)
	if !ok {
		return false
	}
	age := s.opts.now().Sub(t)
	return age > -time.Minute && age < maxParkAge // a minute of clock skew between replicas
}

// grade records fb. A grade for a trace the store does not have, that
// another replica may still be storing, is parked for it (true): the
// replica that stores the trace records it.
func (s *Server) grade(ctx context.Context, fb store.Feedback) (bool, error) {
	err := s.opts.Learner.Grade(ctx, fb)
	pk := s.parker()
	if !errors.Is(err, learn.ErrUnknownTrace) || pk == nil || !s.mayBeStoring(fb.TraceID) {
		return false, err
	}
	if err := pk.ParkFeedback(ctx, fb); err != nil {
		return false, err
	}
	// Stored meanwhile? Its writer may have looked for parked feedback
	// before this was parked: whoever takes it records it.
	if _, err := storeOf(s.opts.Retrieval.Library).GetTrace(ctx, fb.TraceID); err == nil {
		s.gradeParked(ctx, pk, []string{fb.TraceID})
	}
	return true, nil
}

// gradeParked records the feedback parked for the traces ids, now stored.
func (s *Server) gradeParked(ctx context.Context, pk feedbackParker, ids []string) {
	fbs, err := pk.TakeParked(ctx, ids)
	if err != nil {
		s.feedbackFails.add(ctx, 1, fmt.Errorf("taking the feedback parked for %d traces: %w", len(ids), err))
		return
	}
	for _, fb := range fbs {
		ctx, cancel := context.WithTimeout(ctx, feedbackWriteTimeout)
		if err := s.opts.Learner.Grade(ctx, fb); err != nil {
			s.feedbackFails.add(ctx, 1, fmt.Errorf("parked feedback, trace %s: %w", clipHeader(fb.TraceID), err))
		} else {
			s.stats.feedback()
		}
		cancel()
	}
}

// gradeParkedFor records what was parked for the traces just stored.
func (s *Server) gradeParkedFor(ts []store.Trace) {
	pk := s.parker()
	if pk == nil || s.opts.Learner == nil || len(ts) == 0 {
		return
	}
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceWriteTimeout)
	defer cancel()
	s.gradeParked(ctx, pk, ids)
}
