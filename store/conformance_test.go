package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/store"
	"github.com/dso-proxy/dso/store/storetest"
)

var (
	_ storetest.Store = (*store.SQLite)(nil)
	_ storetest.Store = (*store.Redis)(nil)
)

func TestConformanceSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
		s, err := store.OpenDir(context.Background(), t.TempDir(), store.Options{Clock: o.Clock, MaxTraces: o.MaxTraces, TraceMaxAge: o.TraceMaxAge, MaxResponses: o.MaxResponses, ResponseMaxAge: o.ResponseMaxAge})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestConformanceRedis(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
		n++ // one key prefix per test: the tests share the server
		s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{
			Prefix: "t" + string(rune('a'+n%26)) + string(rune('a'+n/26)) + ":",
			Clock:  o.Clock, MaxTraces: o.MaxTraces, TraceMaxAge: o.TraceMaxAge,
			MaxResponses: o.MaxResponses, ResponseMaxAge: o.ResponseMaxAge,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Open reads what the server promises; the test server fsyncs every write.
func TestRedisDurability(t *testing.T) {
	srv := redistest.Start(t)
	s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := s.Durability()
	if !d.AppendOnly || d.AppendFsync != "always" || !d.Full() || !strings.Contains(d.Survives(), "power loss") {
		t.Errorf("Durability = %+v (%s); want appendonly, always, full", d, d.Survives())
	}
	if lax := (store.Durability{AppendOnly: true, AppendFsync: "everysec"}); lax.Full() {
		t.Errorf("everysec without WAITAOF reported full")
	}
}

// A server that is not there is ErrUnavailable, quickly.
func TestRedisUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv.Kill(t)
	start := time.Now()
	_, _, err = s.PutExperience(context.Background(), store.Experience{Text: "t", Confidence: 0.5})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("put with the server down: %v; want ErrUnavailable", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ping with the server down: %v; want ErrUnavailable", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("reporting the server down took %v", took)
	}
	if _, err := store.OpenRedis(context.Background(), "redis://"+srv.Addr, store.RedisOptions{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("open with the server down: %v; want ErrUnavailable", err)
	}
	if _, err := store.OpenRedis(context.Background(), "redis://user:hunter2@[bad", store.RedisOptions{}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("open with a bad URL: %v; want an error without the password", err)
	}
}

// Replicas sharing a Redis store each distil different feedback: what one
// is given is claimed, the other is not given it, and if the first never
// marks it (it died) it is given out again once its lease is over.
func TestRedisFeedbackClaimedOnce(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	clk := storetest.NewClock()
	open := func() *store.Redis {
		s, err := store.OpenRedis(ctx, srv.URL(), store.RedisOptions{Prefix: "claim:", Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	for _, v := range []string{"v1", "v2", "v3"} {
		if err := a.RecordFeedback(ctx, store.Feedback{TraceID: "tr", Voter: v, Grade: 1}, true, nil); err != nil {
			t.Fatal(err)
		}
	}
	gotA, err := a.PendingFeedback(ctx, 2)
	if err != nil || len(gotA) != 2 {
		t.Fatalf("replica A claimed %d, %v; want 2", len(gotA), err)
	}
	gotB, err := b.PendingFeedback(ctx, 10)
	if err != nil || len(gotB) != 1 || gotB[0].Voter == gotA[0].Voter || gotB[0].Voter == gotA[1].Voter {
		t.Fatalf("replica B claimed %+v, %v; want only the one A was not given", gotB, err)
	}
	if err := b.MarkFeedback(ctx, gotB[0].TraceID, gotB[0].Voter, gotB[0].UpdatedAt, store.FeedbackDone); err != nil {
		t.Fatal(err)
	}
	if again, err := b.PendingFeedback(ctx, 10); err != nil || len(again) != 0 {
		t.Fatalf("within the lease B was given %d more, %v; want none", len(again), err)
	}
	// A dies holding two; after the lease they go to B, and only they.
	clk.Advance(store.FeedbackLease + time.Second)
	again, err := b.PendingFeedback(ctx, 10)
	if err != nil || len(again) != 2 {
		t.Fatalf("after A's lease B was given %d, %v; want A's 2", len(again), err)
	}
	for _, fb := range again {
		if fb.Voter == gotB[0].Voter {
			t.Errorf("feedback marked done was given out again: %+v", fb)
		}
	}
}

// Issue 25: a regrade of feedback another replica holds leaves the lease
// alone, so the regrade is not distilled by a second replica while the
// first still distils the grade before. The holder's mark, refused for the
// regrade, ends its lease: the regrade is given out at once. A mark on a
// read older than the lease in force leaves that lease alone.
func TestRedisRegradeKeepsTheLease(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	clk := storetest.NewClock()
	open := func() *store.Redis {
		s, err := store.OpenRedis(ctx, srv.URL(), store.RedisOptions{Prefix: "regrade:", Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b, c := open(), open(), open()
	claim := func(s *store.Redis, who string, want int) []store.Feedback {
		t.Helper()
		got, err := s.PendingFeedback(ctx, 10)
		if err != nil || len(got) != want {
			t.Fatalf("%s was given %+v, %v; want %d", who, got, err, want)
		}
		return got
	}
	grade := func(g float64) {
		t.Helper()
		clk.Advance(time.Second)
		if err := b.RecordFeedback(ctx, store.Feedback{TraceID: "tr", Voter: "v", Grade: g}, g > 0.5, nil); err != nil {
			t.Fatal(err)
		}
	}
	grade(1)
	heldA := claim(a, "A", 1)
	grade(0.2)
	claim(b, "B within A's lease", 0)
	if err := a.MarkFeedback(ctx, heldA[0].TraceID, heldA[0].Voter, heldA[0].UpdatedAt, store.FeedbackDone); err != nil {
		t.Fatal(err)
	}
	heldB := claim(b, "B after A's mark", 1)
	if heldB[0].Grade != 0.2 {
		t.Fatalf("B was given grade %v; want the regrade", heldB[0].Grade)
	}
	// A's read is older than B's lease: marking it again ends nothing.
	if err := a.MarkFeedback(ctx, heldA[0].TraceID, heldA[0].Voter, heldA[0].UpdatedAt, store.FeedbackDone); err != nil {
		t.Fatal(err)
	}
	claim(c, "C within B's lease", 0)
	if err := b.MarkFeedback(ctx, heldB[0].TraceID, heldB[0].Voter, heldB[0].UpdatedAt, store.FeedbackDone); err != nil {
		t.Fatal(err)
	}
	clk.Advance(store.FeedbackLease + time.Second)
	claim(c, "C after the regrade was marked done", 0)
}
