package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// A team behind one shared key can retire a lesson when the operator trusts
// X-DSO-Voter; without that trust the key is one voter, and five of its
// down-votes count as one.
func TestTeamBehindOneKeyRetires(t *testing.T) {
	for _, trust := range []bool{true, false} {
		t.Run(fmt.Sprint("trust=", trust), func(t *testing.T) {
			be := newBackend(t, "openai")
			emb := providers.NewHashEmbedder(256, 3)
			lib := newSpaceLibrary(t, t.TempDir(), library.Space{Name: "hash", Embedder: library.EmbedFunc(emb.Embed)})
			fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
				o.APIKeys = []config.Secret{"team-key"}
				o.TrustVoterHeader = trust
				o.Learner = learn.NewLearner(learn.FeedbackConfig{Library: lib})
			})
			ctx := context.Background()
			e, _, err := lib.Add(ctx, store.Experience{Text: "Round every result to two places.", Domain: "d", Confidence: 0.6})
			if err != nil {
				t.Fatal(err)
			}
			for i := range learn.DefaultMinVotes {
				tr := fmt.Sprintf("tr_%d", i)
				if err := lib.Store().(*store.SQLite).PutTrace(ctx, store.Trace{ID: tr, Query: "q", Domain: "d", ExperienceIDs: []string{e.ID}, Model: "m", Answer: "a"}); err != nil {
					t.Fatal(err)
				}
				code, _, body := post(t, fe.URL+"/v1/feedback", `{"trace_id":"`+tr+`","grade":0}`,
					"Authorization", "Bearer team-key", proxy.HeaderVoter, fmt.Sprintf("member-%d", i))
				if code != 200 {
					t.Fatalf("feedback: %d %s", code, body)
				}
			}
			tally, err := lib.Store().(*store.SQLite).Tally(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := lib.Store().(*store.SQLite).GetExperience(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantVoters, wantStatus := 1, store.StatusActive
			if trust {
				wantVoters, wantStatus = learn.DefaultMinVotes, store.StatusRetired
			}
			if tally.Down != wantVoters || got.Status != wantStatus {
				t.Errorf("%d down-votes counted, %s; want %d, %s", tally.Down, got.Status, wantVoters, wantStatus)
			}
		})
	}
}
