package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Log batching bounds.
const (
	// logFlushEvery is the longest a logged line waits to be written.
	logFlushEvery = 100 * time.Millisecond
	// logBufferBytes is how much is gathered before it is written at once.
	logBufferBytes = 64 << 10
)

// batchWriter gathers log lines and writes them to w together: under load
// a line per request would otherwise cost a write system call each (and
// a wake-up of whatever reads the log). A line is written within
// logFlushEvery, at once when logBufferBytes are waiting, and when Flush
// or Close is called; the handler from newLogger flushes after every
// record at warn or above, so a warning is never held back.
type batchWriter struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	armed  bool // the flush timer is running
	timer  *time.Timer
	err    error // the first write error, kept for Flush and Close
	closed bool
}

func newBatchWriter(w io.Writer) *batchWriter {
	b := &batchWriter{w: w, buf: make([]byte, 0, logBufferBytes)}
	// Stopped until a line is waiting; Write arms it.
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write takes one line (slog handlers write a record in one call).
func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > logBufferBytes {
		b.flushLocked()
		if len(p) > logBufferBytes {
			_, err := b.w.Write(p)
			b.keep(err)
			return len(p), nil
		}
	}
	b.buf = append(b.buf, p...)
	if !b.armed {
		b.armed = true
		b.timer.Reset(logFlushEvery)
	}
	return len(p), nil
}

// Flush writes what is waiting and returns the first write error so far.
func (b *batchWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

// Close flushes; later lines are written as they come.
func (b *batchWriter) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
	return b.err
}

func (b *batchWriter) flushLocked() {
	if b.armed {
		b.armed = false
		b.timer.Stop()
	}
	if len(b.buf) == 0 {
		return
	}
	_, err := b.w.Write(b.buf)
	b.keep(err)
	b.buf = b.buf[:0]
}

func (b *batchWriter) keep(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

// urgentFlush is a handler that flushes its batchWriter after each record
// at warn or above.
type urgentFlush struct {
	slog.Handler
	w *batchWriter
}

func (h urgentFlush) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h urgentFlush) WithAttrs(attrs []slog.Attr) slog.Handler {
	return urgentFlush{h.Handler.WithAttrs(attrs), h.w}
}

func (h urgentFlush) WithGroup(name string) slog.Handler {
	return urgentFlush{h.Handler.WithGroup(name), h.w}
}
