package library_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

var _ library.ChangeWaiter = (*store.Redis)(nil)

// onRedis is a library over its own handle on the Redis server.
func onRedis(t *testing.T, srv *redistest.Server) *library.Library {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenRedis(ctx, srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lib, err := library.New(ctx, library.Config{Store: st, Space: hashSpace(512, 3)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	if err := lib.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	return lib
}

func follow(t *testing.T, lib *library.Library, every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); lib.Follow(ctx, every) }()
	t.Cleanup(func() { cancel(); <-done })
}

// On Redis a follower applies a write as soon as it is on the stream, not
// at its next tick (a minute here).
func TestFollowRedisWakesOnChange(t *testing.T) {
	srv := redistest.Start(t)
	w, lib := onRedis(t, srv), onRedis(t, srv)
	follow(t, lib, time.Minute)
	ctx := context.Background()
	for i := range 3 {
		text := fmt.Sprintf("Lesson %d about streams.", i)
		q := vector(t, w, text)
		e, _, err := w.Add(ctx, store.Experience{Text: text, Confidence: 0.8})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for !found(t, lib, q, e.ID) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("write %d not applied within 5s with a one-minute tick", i)
			}
			time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
		}
	}
}

// A follower whose cursor the stream was trimmed past resynchronises from
// the records, then follows on.
func TestFollowRedisTrimmed(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	w, lib := onRedis(t, srv), onRedis(t, srv) // lib does not follow yet: it falls behind
	var qs [][]float32
	var ids []string
	for i := range 5 {
		text := fmt.Sprintf("Lesson number %d about trimmed streams.", i)
		q := vector(t, w, text)
		e, _, err := w.Add(ctx, store.Experience{Text: text, Confidence: 0.8})
		if err != nil {
			t.Fatal(err)
		}
		qs, ids = append(qs, q), append(ids, e.ID)
	}
	if _, err := w.Store().PruneChanges(ctx, 1); err != nil {
		t.Fatal(err)
	}
	follow(t, lib, 10*time.Millisecond)
	eventually(t, "every record is indexed", func() bool { return lib.Len() == len(ids) })
	for i, id := range ids {
		if !found(t, lib, qs[i], id) {
			t.Errorf("record %d not found after the resync", i)
		}
	}
	text := "A lesson written after the resync."
	q := vector(t, w, text)
	e, _, err := w.Add(ctx, store.Experience{Text: text, Confidence: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a later write is found", func() bool { return found(t, lib, q, e.ID) })
	if err := lib.FollowErr(); err != nil {
		t.Errorf("FollowErr = %v", err)
	}
}
