package learn

import (
	"context"
	"testing"

	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// retiredMeanwhile is the library's own store, except that right after
// the first read of the experience id another writer (the network's
// votes, say) retires it through the library: the read the Learner acts
// on is then stale.
type retiredMeanwhile struct {
	Store
	lib  *library.Library
	id   string
	done bool
}

func (s *retiredMeanwhile) GetExperience(ctx context.Context, id string) (store.Experience, error) {
	e, err := s.Store.GetExperience(ctx, id)
	if err == nil && id == s.id && !s.done {
		s.done = true
		retired := store.StatusRetired
		if _, err := s.lib.Update(ctx, id, store.Update{Status: &retired}); err != nil {
			return e, err
		}
	}
	return e, err
}

// Issue 25: rescoring acts on a read of the experience; a retirement
// written after that read is not overwritten by the stale status.
func TestRescoreKeepsAConcurrentRetirement(t *testing.T) {
	for _, tt := range []struct {
		name string
		open func(t *testing.T) *library.Library
	}{
		{"sqlite", func(t *testing.T) *library.Library { return openLib(t, t.TempDir()) }},
		{"redis", func(t *testing.T) *library.Library {
			srv := redistest.Start(t)
			st, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			lib, err := library.New(context.Background(), library.Config{Store: st, Space: library.Space{Name: "hash", Embedder: embedFunc()}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { lib.Close() })
			return lib
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			lib := tt.open(t)
			e := addLesson(t, lib, "Check the inputs before computing.", "d")
			st := lib.Store().(Store)
			tracer := lib.Store().(interface {
				PutTrace(context.Context, store.Trace) error
			})
			if err := tracer.PutTrace(ctx, store.Trace{ID: "t", Query: "q", Domain: "d", ExperienceIDs: []string{e.ID}, Model: "m", Answer: "a"}); err != nil {
				t.Fatal(err)
			}
			l := NewLearner(FeedbackConfig{Library: lib, Store: &retiredMeanwhile{Store: st, lib: lib, id: e.ID}})
			if err := l.Grade(ctx, store.Feedback{TraceID: "t", Voter: "alice", Grade: 1}); err != nil {
				t.Fatal(err)
			}
			got, err := st.GetExperience(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Score(e.Prior, store.Tally{Up: 1}, DefaultMinVotes, DefaultApproval)
			if got.Status != store.StatusRetired || got.Confidence != want {
				t.Errorf("after the grade: %s, confidence %v; want retired (kept), %v", got.Status, got.Confidence, want)
			}
		})
	}
}
