package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

var (
	errQueueFull   = errors.New("queue full")
	errQueueClosed = errors.New("queue closed")
)

// queue is a bounded FIFO drained by one goroutine, the server's way to
// take work off the request path without a goroutine per request: memory
// is bounded by its length, and close waits until all of it is done.
type queue[T any] struct {
	ch   chan T
	done chan struct{} // closed when the consumer has returned

	mu     sync.RWMutex // protects closed, and holds close off while puts send on ch
	closed bool
}

// newQueue starts consume on a queue of length n; consume must return once
// the channel is closed and drained.
func newQueue[T any](n int, consume func(<-chan T)) *queue[T] {
	q := &queue[T]{ch: make(chan T, n), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		consume(q.ch)
	}()
	return q
}

// put adds v. When the queue is full it waits up to wait for room, calling
// beforeWait (if not nil) first, and returns errQueueFull if none came;
// after close it returns errQueueClosed. A put waiting for room holds close
// off for at most wait.
func (q *queue[T]) put(v T, wait time.Duration, beforeWait func()) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return errQueueClosed
	}
	select {
	case q.ch <- v:
		return nil
	default:
	}
	if wait <= 0 {
		return errQueueFull
	}
	if beforeWait != nil {
		beforeWait()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case q.ch <- v:
		return nil
	case <-t.C:
		return errQueueFull
	}
}

// len is how many items wait to be consumed.
func (q *queue[T]) len() int { return len(q.ch) }

// close refuses further puts and waits until the consumer has drained the
// queue and returned. It may be called more than once.
func (q *queue[T]) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	<-q.done
}

// warnEvery logs a warning that may repeat many times a second (a dropped
// trace under overload) at most once per interval, saying how many times it
// happened since its last line: one line per event once wrote 84 MB of log
// in 15 seconds, which hid everything else and cost the disk the node was
// short of.
type warnEvery struct {
	log   *slog.Logger
	msg   string
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex // protects the fields below
	last    time.Time  // when the last line was written; zero: never
	n       int        // events since the last line
	lastErr string     // the latest event's error, if any
}

func newWarnEvery(log *slog.Logger, now func() time.Time, every time.Duration, msg string) *warnEvery {
	return &warnEvery{log: log, msg: msg, every: every, now: now}
}

// add counts n events (err, if not nil, is the latest's cause) and writes
// the line when the last one is at least an interval old.
func (w *warnEvery) add(ctx context.Context, n int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += n
	if err != nil {
		w.lastErr = err.Error()
	}
	now := w.now()
	if !w.last.IsZero() && now.Sub(w.last) < w.every {
		return
	}
	w.last = now
	w.writeLocked(ctx)
}

// flush writes the events not yet reported, if any (at Close: none is lost
// to the interval).
func (w *warnEvery) flush(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n > 0 {
		w.writeLocked(ctx)
	}
}

func (w *warnEvery) writeLocked(ctx context.Context) {
	attrs := []slog.Attr{slog.Int("count", w.n), slog.String("interval", w.every.String())}
	if w.lastErr != "" {
		attrs = append(attrs, slog.String(logKeyErr, w.lastErr))
	}
	w.log.LogAttrs(ctx, slog.LevelWarn, w.msg, attrs...)
	w.n, w.lastErr = 0, ""
}
