package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestWarnEvery(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type event struct {
		at    time.Duration // since start
		n     int
		err   error
		flush bool // flush instead of add
	}
	tests := []struct {
		name   string
		events []event
		want   []string // the lines' count and err attributes, in order
	}{
		{
			name:   "the first event is said at once",
			events: []event{{at: 0, n: 1}},
			want:   []string{"count=1"},
		},
		{
			name:   "events within the interval wait for the next line",
			events: []event{{at: 0, n: 1}, {at: time.Second, n: 1}, {at: 9 * time.Second, n: 3}},
			want:   []string{"count=1"},
		},
		{
			name:   "the next line counts everything since the last",
			events: []event{{at: 0, n: 1}, {at: time.Second, n: 1}, {at: 9 * time.Second, n: 3}, {at: 10 * time.Second, n: 1}},
			want:   []string{"count=1", "count=5"},
		},
		{
			name:   "flush says what is left, and nothing when nothing is",
			events: []event{{at: 0, n: 1}, {at: time.Second, n: 2}, {flush: true}, {flush: true}},
			want:   []string{"count=1", "count=2"},
		},
		{
			name:   "a line carries the latest error",
			events: []event{{at: 0, n: 512, err: errors.New("disk full")}, {at: time.Second, n: 512, err: errors.New("disk still full")}, {at: 20 * time.Second, n: 1}},
			want:   []string{`count=512 interval=10s err="disk full"`, `count=513 interval=10s err="disk still full"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			now := start
			w := newWarnEvery(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now }, 10*time.Second, "repeated")
			for _, e := range tt.events {
				if e.flush {
					w.flush(context.Background())
					continue
				}
				now = start.Add(e.at)
				w.add(context.Background(), e.n, e.err)
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines %q; want %d", len(lines), lines, len(tt.want))
			}
			for i, l := range lines {
				if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "msg=repeated "+tt.want[i]) {
					t.Errorf("line %d %q; want a warning with %s", i, l, tt.want[i])
				}
			}
		})
	}
}

func TestQueue(t *testing.T) {
	release := make(chan struct{})
	var got []int
	q := newQueue(1, func(ch <-chan int) {
		<-release
		for v := range ch {
			got = append(got, v)
		}
	})
	if err := q.put(1, 0, nil); err != nil {
		t.Fatalf("put into an empty queue: %v", err)
	}
	// Full, with no wait: refused at once, before any wait is begun.
	waited := false
	if err := q.put(2, -1, func() { waited = true }); !errors.Is(err, errQueueFull) || waited {
		t.Errorf("put into a full queue without a wait: %v, began waiting %v; want errQueueFull at once", err, waited)
	}
	if q.len() != 1 {
		t.Errorf("len %d; want 1", q.len())
	}
	// Full, with a wait: beforeWait runs, then room comes when the
	// consumer starts.
	if err := q.put(3, time.Hour, func() { close(release) }); err != nil {
		t.Errorf("put that waited for room: %v", err)
	}
	q.close()
	q.close() // twice is fine
	if err := q.put(4, time.Hour, nil); !errors.Is(err, errQueueClosed) {
		t.Errorf("put after close: %v; want errQueueClosed", err)
	}
	if want := []int{1, 3}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("consumed %v; want %v, all of it before close returned", got, want)
	}
}
