package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/store"
)

// Turn notes are read back in one call, nil where none, and only the
// newest MaxTurnNotes are kept.
func TestRedisTurnNotes(t *testing.T) {
	srv := redistest.Start(t)
	s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{Prefix: "turns:", MaxTurnNotes: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range 10 {
		if err := s.PutTurnNotes(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{"k0", "k4", "k5", "k9", "none"}
	got, err := s.TurnNotes(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", "", "v5", "v9", ""}
	for i, k := range keys {
		if string(got[i]) != want[i] || (want[i] == "") != (got[i] == nil) {
			t.Errorf("%s = %q; want %q", k, got[i], want[i])
		}
	}
}
