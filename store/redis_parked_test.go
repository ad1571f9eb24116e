package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/store"
)

// Feedback parked for a trace is taken once, whole, by one of the
// callers that race for it; a trace holds at most MaxParkedPerTrace
// records; an invalid record is refused before it is parked.
func TestRedisParkedFeedback(t *testing.T) {
	srv := redistest.Start(t)
	s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{Prefix: "parked:"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, v := range []string{"key:a", "key:b"} {
		if err := s.ParkFeedback(ctx, store.Feedback{TraceID: "tr_1", Voter: v, Grade: 1, Correction: "use a context"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ParkFeedback(ctx, store.Feedback{TraceID: "tr_1", Grade: 1}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("feedback without a voter: %v; want ErrInvalid", err)
	}
	var mu sync.Mutex
	var got []store.Feedback
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fbs, err := s.TakeParked(ctx, []string{"tr_0", "tr_1"})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			got = append(got, fbs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(got) != 2 || got[0].Voter == got[1].Voter || got[0].Correction != "use a context" || got[0].TraceID != "tr_1" {
		t.Errorf("taken by 4 callers at once: %+v; want the 2 records once", got)
	}
	for i := range store.MaxParkedPerTrace + 1 {
		err := s.ParkFeedback(ctx, store.Feedback{TraceID: "tr_2", Voter: "key:" + string(rune('a'+i)), Grade: 0})
		if full := i == store.MaxParkedPerTrace; errors.Is(err, store.ErrParkingFull) != full || (!full && err != nil) {
			t.Fatalf("record %d for one trace: %v; want ErrParkingFull only past %d", i, err, store.MaxParkedPerTrace)
		}
	}
}
