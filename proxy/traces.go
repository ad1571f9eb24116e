package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/dso-proxy/dso/store"
)

// Trace queue defaults and limits.
const (
	// DefaultTraceQueue is Options.TraceQueue's default: finished traces
	// waiting for the trace writer.
	DefaultTraceQueue = 4096
	// DefaultTraceWait is Options.TraceWait's default.
	DefaultTraceWait = time.Second
	// DefaultTraceGather is Options.TraceGather's default: long enough that
	// a few hundred requests a second share a transaction, and that at
	// thousands a second a commit's own cost is a small share of the
	// rows' (at 8,000 a second, 10 ms batches of 80 spent over a quarter
	// of the trace writer's CPU outside the inserts), short enough that
	// the dashboard shows a trace as good as at once.
	DefaultTraceGather = 25 * time.Millisecond
	// maxTraceBatch caps the traces stored in one transaction: big enough
	// that one sync to disk carries a whole burst, small enough that a
	// batch commits in milliseconds and feedback waiting on one of its
	// traces is not held long.
	maxTraceBatch = 512
	// traceWriteTimeout bounds one batch's transaction.
	traceWriteTimeout = 10 * time.Second
	// warnInterval is the least time between two lines of one repeated
	// warning.
	warnInterval = 10 * time.Second
	// maxSpooledTraces bounds the traces kept in memory while the store
	// is away; with the spool full, chats get no trace id (a grade for
	// them could never be recorded).
	maxSpooledTraces = 10000
	// spoolRetryEvery is how often spooled traces are offered to the
	// store again while no new trace comes.
	spoolRetryEvery = time.Second
)

// trace is what a request records for later feedback.
type trace struct {
	rec     store.Trace
	answer  *cappedBuffer
	whole   bool                // answer is known to be one body (see answerText)
	discard bool                // not to be kept: its id was not handed out
	w       http.ResponseWriter // the request's, to send its answer before waiting for room
}

// tee is where the handler copies the answer for the trace, whole saying
// whether it is one body (see answerText); nil for a request without a
// trace.
func (t *trace) tee(whole bool) io.Writer {
	if t == nil {
		return nil
	}
	t.whole = whole
	return t.answer
}

// newTraceID returns a fresh trace id: the time in nanoseconds, then 64
// random bits, so that ids a node makes sort by time and a store's index
// of them grows at its end (random ids put each insert on a random page
// of an index far larger than the page cache). The random half keeps an
// id unguessable from the time of its request.
func newTraceID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	var id [3 + 2*len(b)]byte
	copy(id[:], "tr_")
	hex.Encode(id[3:], b[:])
	return string(id[:])
}

// recordTrace queues tr for the trace writer. When the queue is full (the
// store is not keeping up even in batches) it waits up to
// Options.TraceWait for room, so that a burst slows down instead of losing
// traces, and only then drops the trace, counting it and warning at most
// once per warnInterval.
//
// The chat handlers (openAIChat, ollamaChatLike in chat.go) call it in a
// defer, after the answer has been relayed or translated and written, so
// waiting here holds back the handler's return, and with it the next
// request on the client's connection, not the answer. One caveat: net/http
// keeps what a handler wrote and did not flush until the handler returns,
// and a non-streamed answer is never flushed (relay copies it whole,
// translateWhole writes it once), so before waiting recordTrace flushes
// what was written. A body with a Content-Length then reaches the client
// whole; a chunked one (a stream, or a translated answer) has all its
// bytes there but its closing chunk still waits for the handler's return.
func (s *Server) recordTrace(ctx context.Context, tr *trace) {
	if tr == nil || tr.discard || s.opts.Retrieval.Library == nil {
		return
	}
	if ri := info(ctx); ri.status >= 300 || ri.broken.Load() {
		// An error, or an answer the backend broke off: nothing a grade
		// could be about. Its id went out only with a broken stream's
		// head; feedback for it is refused as for an unknown trace.
		s.traceSettled(tr.rec.ID)
		return
	}
	tr.rec.Answer = answerText(tr.answer.Bytes(), tr.whole)
	u := usageOf(tr.answer.Tail())
	s.metrics.usage.observe(info(ctx).backend, u)
	s.stats.promptTokens(u)
	err := s.traceQ.put(tr.rec, s.opts.TraceWait, func() { flushWritten(tr.w) })
	switch {
	case errors.Is(err, errQueueClosed):
		// A request outlived a forced shutdown: its trace is not stored.
		s.traceSettled(tr.rec.ID)
	case errors.Is(err, errQueueFull):
		s.metrics.traceDropped.Inc()
		s.traceDrops.add(ctx, 1, nil)
		s.traceSettled(tr.rec.ID)
	}
}

// flushWritten sends the response written so far, if one was begun: a
// response that was not (a handler that panicked before writing) must keep
// its status unsent for the recoverer to write.
func flushWritten(w http.ResponseWriter) {
	for w != nil {
		if sw, ok := w.(*statusWriter); ok {
			if sw.wroteHeader {
				sw.Flush()
			}
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

// traceSettled wakes feedback waiting for a trace that is now stored (or
// will never be).
func (s *Server) traceSettled(id string) {
	if ch, ok := s.pending.LoadAndDelete(id); ok {
		close(ch.(chan struct{}))
	}
}

// tracePending reports whether the trace is still on its way to the store:
// created by a request here, and neither stored nor given up yet.
func (s *Server) tracePending(id string) bool {
	_, ok := s.pending.Load(id)
	return ok
}

// maxTraceWait bounds how long feedback waits for its trace to be stored.
const maxTraceWait = 10 * time.Second

// awaitTrace waits until a trace this node is still storing is stored (or
// given up).
func (s *Server) awaitTrace(ctx context.Context, id string) {
	ch, ok := s.pending.Load(id)
	if !ok {
		return
	}
	// The writer stops gathering while anyone waits: counted first, so a
	// trace queued after the nudge is not gathered either.
	s.traceAwaited.Add(1)
	defer s.traceAwaited.Add(-1)
	select {
	case s.traceNudge <- struct{}{}:
	default:
	}
	t := time.NewTimer(maxTraceWait)
	defer t.Stop()
	select {
	case <-ch.(chan struct{}):
	case <-ctx.Done():
	case <-t.C:
	}
}

// writeTraces stores queued traces until the queue is closed and drained.
// It takes whatever has queued up, and what joins it within
// Options.TraceGather, to maxTraceBatch, and stores it in one transaction,
// so the traces stored per second follow the load rather than the disk's
// syncs per second, and a steady load pays one commit per interval rather
// than one per request: while one batch commits, the next one gathers.
// Each trace is settled after its batch commits, so feedback waiting on it
// finds it stored.
func (s *Server) writeTraces(ch <-chan store.Trace) {
	st := storeOf(s.opts.Retrieval.Library)
	batch := make([]store.Trace, 0, min(maxTraceBatch, cap(ch)))
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	full := false // the last batch was full: the load outruns the gathering
	var retry <-chan time.Time
	for {
		select {
		case t, ok := <-ch:
			if !ok {
				s.spool.drain(s, st) // a last try: what the store still refuses is lost
				s.spool.lose(s)
				return
			}
			batch = s.gatherTraces(ch, append(batch[:0], t), timer, !full)
			full = len(batch) == cap(batch)
			s.metrics.traceBatch.Observe(float64(len(batch)))
			if s.spool.len() > 0 && s.spool.add(s, batch) {
				// Behind the older spooled traces: one try of the store
				// for all of them, not one for those and one for these.
				s.spool.drain(s, st)
			} else {
				s.putTraces(st, batch)
			}
		case <-retry:
			s.spool.drain(s, st)
		}
		retry = nil
		if s.spool.len() > 0 {
			retry = time.After(spoolRetryEvery)
		}
	}
}

// putTraces stores a batch and settles its traces; a batch the store
// could not take because it is away goes to the spool, its traces still
// pending.
func (s *Server) putTraces(st Store, batch []store.Trace) {
	ctx, cancel := context.WithTimeout(context.Background(), traceWriteTimeout)
	defer cancel()
	err := st.PutTraces(ctx, batch)
	s.storeAway.Store(errors.Is(err, store.ErrUnavailable))
	if errors.Is(err, store.ErrUnavailable) && s.spool.add(s, batch) {
		return
	}
	s.settleTraces(batch, err)
}

// settleTraces ends the wait of feedback for traces the store took, or
// (err not nil) that are lost, which is warned about.
func (s *Server) settleTraces(ts []store.Trace, err error) {
	if err != nil {
		s.traceFails.add(context.Background(), len(ts), err)
	}
	for _, t := range ts {
		s.traceSettled(t.ID)
	}
	if err == nil {
		s.gradeParkedFor(ts)
	}
}

// gatherTraces adds to batch what has queued and, with wait, what queues
// within Options.TraceGather, until batch is full or the queue closes.
// Feedback waiting for a trace ends the wait (awaitTrace), or skips it, and
// so does Close.
//
// The gathering sleeps rather than receives: a trace put on the queue
// meanwhile wakes no one, so a batch costs the writer two wake-ups (its
// first trace and the timer) instead of one per trace, which on a busy
// node was a goroutine switch per request. The queue holds what comes
// meanwhile (Options.TraceQueue, far more than a batch), and wait is false
// after a full batch: while the load fills batches, they are taken as fast
// as they commit.
func (s *Server) gatherTraces(ch <-chan store.Trace, batch []store.Trace, timer *time.Timer, wait bool) []store.Trace {
	batch = queuedTraces(ch, batch)
	if !wait || len(batch) == cap(batch) || s.opts.TraceGather < 0 || s.traceAwaited.Load() > 0 {
		// A nudge sent for this batch is spent: left in the channel, it
		// would end the next batch's gathering at once.
		select {
		case <-s.traceNudge:
		default:
		}
		return batch
	}
	timer.Reset(s.opts.TraceGather)
	select {
	case <-timer.C:
	case <-s.traceNudge:
		timer.Stop()
	case <-s.tracesClosing:
		timer.Stop()
	}
	return queuedTraces(ch, batch)
}

// queuedTraces adds to batch, up to its capacity, the traces queued now.
func queuedTraces(ch <-chan store.Trace, batch []store.Trace) []store.Trace {
	for len(batch) < cap(batch) {
		select {
		case t, ok := <-ch:
			if !ok {
				return batch
			}
			batch = append(batch, t)
		default:
			return batch
		}
	}
	return batch
}

// Close stops accepting traces and header feedback, and waits until the
// queued traces are stored and the queued feedback recorded. Call it after
// the HTTP server has shut down.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		// Traces first: feedback queued for a trace still being written
		// waits for it, and then finds it stored.
		if s.traceQ != nil {
			close(s.tracesClosing)
			s.traceQ.close()
		}
		if s.feedbackQ != nil {
			s.feedbackQ.close()
		}
		ctx := context.Background()
		for _, w := range []*warnEvery{s.traceDrops, s.traceFails, s.feedbackFails} {
			w.flush(ctx)
		}
	})
	return nil
}
