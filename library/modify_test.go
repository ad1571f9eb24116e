package library_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// A modify moves the lesson to its new text with everything it earned:
// votes, confidence, prior, status, key; the old text is no longer found.
// The same text again is no change, and a repeat after the move reports
// the old lesson gone.
func TestModifyKeepsVotes(t *testing.T) {
	ctx := context.Background()
	lib, st := open(t, t.TempDir())
	old, _, err := lib.Add(ctx, store.Experience{Text: "Multiply inches by 2.5.", Key: "Convert 3 inches to cm.", Domain: "units", Confidence: 0.6})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []store.Vote{{Voter: "a", TraceID: "t1", Up: true}, {Voter: "b", TraceID: "t2", Up: false}} {
		v.ExperienceID = old.ID
		if err := st.PutVote(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	conf := 0.7
	if _, err := lib.Update(ctx, old.ID, store.Update{Confidence: &conf}); err != nil {
		t.Fatal(err)
	}
	same, err := lib.Modify(ctx, old.ID, "  Multiply inches by 2.5. ")
	if err != nil || same.ID != old.ID || lib.Len() != 1 {
		t.Fatalf("unchanged text: %v, id %.8s, library %d; want no change", err, same.ID, lib.Len())
	}
	got, err := lib.Modify(ctx, old.ID, "Multiply inches by 2.54 to get centimetres.")
	if err != nil {
		t.Fatal(err)
	}
	if got.Confidence != conf || got.Prior != 0.6 || got.Key != old.Key || got.Status != store.StatusActive || got.Domain != "units" {
		t.Errorf("modified: %+v; want confidence %v, prior 0.6, the key, active, units", got, conf)
	}
	votes, err := st.Votes(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	voters := []string{}
	for _, v := range votes {
		voters = append(voters, v.Voter)
	}
	slices.Sort(voters)
	if tally, _ := st.Tally(ctx, got.ID); !slices.Equal(voters, []string{"a", "b"}) || tally != (store.Tally{Up: 1, Down: 1}) {
		t.Errorf("votes moved: %v, tally %+v; want a and b, one up one down", voters, tally)
	}
	if _, err := st.GetExperience(ctx, old.ID); !errors.Is(err, store.ErrNotFound) || lib.Len() != 1 {
		t.Errorf("old text: %v, library %d; want it gone, one lesson", err, lib.Len())
	}
	res, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, "inches to centimetres"), K: 5, MinRelevance: &library.NoGate})
	if err != nil || len(res) != 1 || res[0].ID != got.ID {
		t.Errorf("search finds %v, %v; want the modified lesson only", res, err)
	}
	if _, err := lib.Modify(ctx, old.ID, "Multiply inches by 2.54 to get centimetres."); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("repeat after the move: %v; want not found", err)
	}
}
