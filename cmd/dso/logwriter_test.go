package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records what reaches it and in how many writes.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	wrote  chan struct{} // signalled after each write
}

func newCountingWriter() *countingWriter { return &countingWriter{wrote: make(chan struct{}, 1024)} }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.buf.Write(p)
	select {
	case c.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *countingWriter) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Split(strings.TrimSuffix(c.buf.String(), "\n"), "\n")
}

func (c *countingWriter) count() (writes, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.buf.Len()
}

// Request lines at info are gathered into few writes, in order; a warning
// goes out at once with everything before it.
func TestLoggerBatchesLinesAndFlushesWarnings(t *testing.T) {
	w := newCountingWriter()
	log, closeLog := newLogger(w, "info")
	defer closeLog()
	const n = 200
	for i := range n {
		log.Info("request", "i", i)
	}
	log.Warn("disk full")
	// The warning's flush is synchronous: no waiting here.
	lines := w.lines()
	if len(lines) != n+1 {
		t.Fatalf("after the warning %d lines had been written, want %d", len(lines), n+1)
	}
	for i, l := range lines {
		var rec struct {
			Msg string
			I   *int
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %d: %v: %q", i, err, l)
		}
		if i < n && (rec.I == nil || *rec.I != i) || i == n && rec.Msg != "disk full" {
			t.Fatalf("line %d is %q: lines out of order", i, l)
		}
	}
	// A write per line would be n+1; only a flush timer firing mid-loop
	// (every logFlushEvery) adds a write.
	if writes, _ := w.count(); writes > n/10 {
		t.Errorf("%d lines took %d writes; want them batched", n+1, writes)
	}
}

// A line at info is written within logFlushEvery with no flush asked for,
// and a full buffer is written at once.
func TestLoggerWritesWithinTheInterval(t *testing.T) {
	w := newCountingWriter()
	log, closeLog := newLogger(w, "info")
	defer closeLog()
	log.Info("dso listening", "addr", "127.0.0.1:1")
	select {
	case <-w.wrote:
	case <-time.After(10 * logFlushEvery):
		t.Fatalf("an info line was not written within %v", 10*logFlushEvery)
	}
	if l := w.lines(); len(l) != 1 || !strings.Contains(l[0], "dso listening") {
		t.Fatalf("wrote %q", l)
	}

	w2 := newCountingWriter()
	log2, closeLog2 := newLogger(w2, "info")
	defer closeLog2()
	long := strings.Repeat("x", 1000)
	var logged int
	for logged < 2*logBufferBytes {
		log2.Info("request", "v", long)
		logged += len(long)
	}
	// More than the buffer holds has been logged: all but what the
	// buffer still holds is out, without the timer.
	if _, got := w2.count(); got < logged-logBufferBytes {
		t.Fatalf("%d bytes logged, %d written; want all but at most %d", logged, got, logBufferBytes)
	}
}

// Close writes what waits; lines after it are written directly.
func TestLoggerCloseFlushes(t *testing.T) {
	w := newCountingWriter()
	log, closeLog := newLogger(w, "debug")
	log.Debug("one")
	log.Info("two")
	closeLog()
	if l := w.lines(); len(l) != 2 {
		t.Fatalf("after close %d lines written, want 2", len(l))
	}
	log.Info("three")
	if l := w.lines(); len(l) != 3 {
		t.Fatalf("a line after close was held: %d lines, want 3", len(l))
	}
}
