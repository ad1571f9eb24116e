package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestPutTraces(t *testing.T) {
	ctx := context.Background()
	ids := func(n int) []Trace {
		ts := make([]Trace, n)
		for i := range ts {
			ts[i] = Trace{ID: fmt.Sprint("t", i), Query: fmt.Sprint("q", i)}
		}
		return ts
	}
	tests := []struct {
		name    string
		opts    Options
		before  func(t *testing.T, s *SQLite, clk *fakeClock) // stored before the batch
		batch   []Trace
		wantErr error
		kept    []string          // stored afterwards
		gone    []string          // not stored afterwards
		answers map[string]string // answers stored afterwards, by id
		count   int               // traces stored afterwards
	}{
		{
			name:  "every trace of the batch is stored",
			batch: ids(5),
			kept:  []string{"t0", "t1", "t2", "t3", "t4"},
			count: 5,
		},
		{
			name:  "empty batch",
			batch: nil,
			count: 0,
		},
		{
			name: "count limit: the newest are kept, ties by insertion",
			opts: Options{MaxTraces: 3},
			before: func(t *testing.T, s *SQLite, clk *fakeClock) {
				if err := s.PutTrace(ctx, Trace{ID: "old"}); err != nil {
					t.Fatal(err)
				}
				clk.Advance(time.Minute)
			},
			batch: ids(5),
			kept:  []string{"t2", "t3", "t4"},
			gone:  []string{"old", "t0", "t1"},
			count: 3,
		},
		{
			name: "age limit: traces older than the limit go",
			opts: Options{TraceMaxAge: time.Hour},
			before: func(t *testing.T, s *SQLite, clk *fakeClock) {
				if err := s.PutTrace(ctx, Trace{ID: "old"}); err != nil {
					t.Fatal(err)
				}
				clk.Advance(2 * time.Hour)
			},
			batch: append(ids(2), Trace{ID: "backdated", CreatedAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}),
			kept:  []string{"t0", "t1"},
			gone:  []string{"old", "backdated"},
			count: 2,
		},
		{
			name:    "a later trace replaces an earlier one with the same id",
			batch:   []Trace{{ID: "t0", Answer: "draft"}, {ID: "t1"}, {ID: "t0", Answer: "final"}},
			kept:    []string{"t0", "t1"},
			answers: map[string]string{"t0": "final"},
			count:   2,
		},
		{
			name:    "one invalid trace writes none",
			batch:   append(ids(2), Trace{ID: ""}),
			wantErr: ErrInvalid,
			gone:    []string{"t0", "t1"},
			count:   0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			tt.opts.Clock = clk
			s := openTest(t, "", tt.opts)
			if tt.before != nil {
				tt.before(t, s, clk)
			}
			err := s.PutTraces(ctx, tt.batch)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("PutTraces err = %v; want %v", err, tt.wantErr)
			}
			for _, id := range tt.kept {
				got, err := s.GetTrace(ctx, id)
				if err != nil {
					t.Errorf("GetTrace(%s): %v", id, err)
					continue
				}
				if !got.CreatedAt.Equal(clk.Now()) || got.ExperienceIDs == nil {
					t.Errorf("GetTrace(%s) = %+v; want created now, experience ids not nil", id, got)
				}
			}
			for _, id := range tt.gone {
				if _, err := s.GetTrace(ctx, id); !errors.Is(err, ErrNotFound) {
					t.Errorf("GetTrace(%s) err = %v; want ErrNotFound", id, err)
				}
			}
			for id, want := range tt.answers {
				if got, _ := s.GetTrace(ctx, id); got.Answer != want {
					t.Errorf("GetTrace(%s).Answer = %q; want %q", id, got.Answer, want)
				}
			}
			if n, err := s.CountTraces(ctx); err != nil || n != tt.count {
				t.Errorf("CountTraces = %d, %v; want %d", n, err, tt.count)
			}
		})
	}
}

// Retention once per batch leaves what retention after every trace leaves.
func TestPutTracesRetentionMatchesPutTrace(t *testing.T) {
	ctx := context.Background()
	opts := func(clk *fakeClock) Options { return Options{Clock: clk, MaxTraces: 7, TraceMaxAge: time.Hour} }
	oneClk, batchClk := newFakeClock(), newFakeClock()
	one := openTest(t, "", opts(oneClk))
	batch := openTest(t, "", opts(batchClk))
	base := oneClk.Now()
	for round := range 4 {
		var ts []Trace
		for i := range 5 {
			tr := Trace{ID: fmt.Sprintf("r%d-%d", round, i%4)} // ids repeat within a round
			switch i {
			case 1:
				tr.CreatedAt = base.Add(-2 * time.Hour) // already past the age limit
			case 2:
				tr.CreatedAt = base.Add(time.Duration(round) * 10 * time.Minute) // out of order
			}
			ts = append(ts, tr)
		}
		for _, tr := range ts {
			if err := one.PutTrace(ctx, tr); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.PutTraces(ctx, ts); err != nil {
			t.Fatal(err)
		}
		oneClk.Advance(25 * time.Minute)
		batchClk.Advance(25 * time.Minute)
	}
	stored := func(s *SQLite) []string {
		rows, err := s.r.QueryContext(ctx, `SELECT id FROM traces ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	if a, b := stored(one), stored(batch); !slices.Equal(a, b) || len(a) == 0 {
		t.Errorf("one by one kept %q; in batches %q", a, b)
	}
}

// BenchmarkPutTraces stores traces one transaction each (PutTrace), 512
// per transaction (PutTraces) into an empty table, and 80 per transaction
// (a steady load of a few thousand requests a second, gathered for 10 ms)
// into a table already at its count limit, so that every trace stored
// also deletes one: the state of a node that has served for a while. The
// batched sub-benchmarks report their speed-up over the one measured
// first, in the same run.
//
//	go test -run xxx -bench PutTraces ./store
func BenchmarkPutTraces(b *testing.B) {
	ctx := context.Background()
	var single float64 // ns per trace, one transaction each
	for _, bc := range []struct {
		name  string
		batch int
		full  bool
	}{{"PutTrace", 1, false}, {"PutTraces-512", 512, false}, {"PutTraces-80-full", 80, true}} {
		b.Run(bc.name, func(b *testing.B) {
			s := openTest(b, "", Options{})
			n := 0
			next := func(k int) []Trace {
				ts := make([]Trace, k)
				for i := range ts {
					n++
					ts[i] = Trace{ID: newTestTraceID(n), Query: "How do I close a file I wrote?", ExperienceIDs: []string{"e1", "e2"}, Model: "m", Answer: "Check the error Close returns."}
				}
				return ts
			}
			for bc.full && n < DefaultMaxTraces {
				if err := s.PutTraces(ctx, next(512)); err != nil {
					b.Fatal(err)
				}
			}
			filled := n
			b.ReportAllocs()
			for b.Loop() {
				ts := next(bc.batch)
				var err error
				if bc.batch == 1 {
					err = s.PutTrace(ctx, ts[0])
				} else {
					err = s.PutTraces(ctx, ts)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			// Past the count limit, retention steps down to 95% of it.
			lo, hi := n, n
			if n > DefaultMaxTraces {
				lo, hi = DefaultMaxTraces-DefaultMaxTraces/20, DefaultMaxTraces
			}
			if got, err := s.CountTraces(ctx); err != nil || got < lo || got > hi {
				b.Fatalf("stored %d traces, %v; want %d to %d", got, err, lo, hi)
			}
			perTrace := float64(b.Elapsed().Nanoseconds()) / float64(n-filled)
			b.ReportMetric(perTrace, "ns/trace")
			if bc.batch == 1 {
				single = perTrace
			} else if single > 0 {
				b.ReportMetric(single/perTrace, "x-vs-PutTrace")
			}
		})
	}
}

// newTestTraceID is an id shaped as the proxy makes them (time first), for
// the n-th trace.
func newTestTraceID(n int) string {
	return fmt.Sprintf("tr_%016x%016x", time.Now().UnixNano(), uint64(n)*0x9e3779b97f4a7c15)
}

// The count limit is applied in steps: past MaxTraces, the oldest are
// dropped down to 95% of it, so that the walk over the table is paid once
// per MaxTraces/20 traces; the table never holds more than MaxTraces.
func TestTraceCountLimitSteps(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{MaxTraces: 200})
	for i := range 450 {
		if err := s.PutTrace(ctx, Trace{ID: fmt.Sprintf("t%03d", i)}); err != nil {
			t.Fatal(err)
		}
		n, err := s.CountTraces(ctx)
		if err != nil || n > 200 {
			t.Fatalf("after %d traces: %d stored, %v; want at most 200", i+1, n, err)
		}
	}
	n, _ := s.CountTraces(ctx)
	if n < 190 {
		t.Errorf("%d stored; want the newest 190 to 200", n)
	}
	if _, err := s.GetTrace(ctx, "t449"); err != nil {
		t.Errorf("the newest trace is gone: %v", err)
	}
	if _, err := s.GetTrace(ctx, "t100"); err == nil {
		t.Error("an old trace survived the limit")
	}
}

// Age pruning keeps the trace count estimate without counting the table:
// with traces expiring by age and by count, the estimate never falls below
// what is stored (the count limit would be missed) and the limit holds.
func TestTraceAgePruningKeepsTheEstimate(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := openTest(t, "", Options{Clock: clk, MaxTraces: 50, TraceMaxAge: time.Hour})
	for i := range 300 {
		// Runs of batches past the count limit, then hours that expire
		// traces by age.
		if err := s.PutTraces(ctx, []Trace{{ID: fmt.Sprintf("t%03d", i)}, {ID: fmt.Sprintf("u%03d", i)}}); err != nil {
			t.Fatal(err)
		}
		if i%40 >= 35 {
			clk.Advance(20 * time.Minute)
		}
		n, err := s.CountTraces(ctx)
		if err != nil || n > 50 {
			t.Fatalf("after %d batches: %d stored, %v; want at most 50", i+1, n, err)
		}
		if est := s.traces.Load(); est < int64(n) {
			t.Fatalf("after %d batches: estimate %d below the %d stored", i+1, est, n)
		}
	}
	if _, err := s.GetTrace(ctx, "t299"); err != nil {
		t.Errorf("the newest trace is gone: %v", err)
	}
}

// Traces commit with synchronous=NORMAL, and only they: the writer is
// back at FULL after their transaction, committed or rolled back, so the
// next write is synced (and syncs the traces before it).
func TestTracesCommitUnsynced(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	synchronous := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		t.Helper()
		var v int
		if err := q.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	fail := errors.New("fn failed")
	for _, fnErr := range []error{nil, fail} {
		err := s.writeTxUnsynced(ctx, func(tx *sql.Tx) error {
			if got := synchronous(tx); got != 1 {
				t.Errorf("synchronous in the transaction = %d; want 1 (NORMAL)", got)
			}
			return fnErr
		})
		if !errors.Is(err, fnErr) || (fnErr == nil) != (err == nil) {
			t.Errorf("writeTxUnsynced = %v; want %v", err, fnErr)
		}
		if got := synchronous(s.w); got != 2 {
			t.Errorf("synchronous after a transaction that returned %v = %d; want 2 (FULL)", fnErr, got)
		}
	}
	if err := s.PutTraces(ctx, []Trace{{ID: "tr_a", Query: "q", Answer: "a"}}); err != nil {
		t.Fatal(err)
	}
	if got := synchronous(s.w); got != 2 {
		t.Errorf("synchronous after PutTraces = %d; want 2 (FULL)", got)
	}
	if _, err := s.GetTrace(ctx, "tr_a"); err != nil {
		t.Errorf("trace after PutTraces: %v", err)
	}
}
