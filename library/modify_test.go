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

// A domain no larger than WholeDomain is returned whole, still through
// the gate; a larger one gets its best K.
func TestSearchWholeDomain(t *testing.T) {
	ctx := context.Background()
	lib, _ := open(t, t.TempDir())
	var es []store.Experience
	for i, text := range []string{"Multiply inches by 2.54 for centimetres.", "Multiply miles by 1.609 for kilometres.", "Multiply pounds by 0.4536 for kilograms."} {
		es = append(es, store.Experience{Text: text, Domain: "small", Confidence: 0.6 + 0.1*float64(i)})
	}
	for i := range 8 {
		es = append(es, store.Experience{Text: "Big domain lesson about units number " + string(rune('a'+i)), Domain: "big", Confidence: 0.6})
	}
	if _, _, err := lib.AddMany(ctx, es); err != nil {
		t.Fatal(err)
	}
	v := vector(t, lib, "Convert 3 inches to centimetres")
	for _, tc := range []struct {
		domain string
		gate   float32
		want   int
	}{{"small", library.NoGate, 3}, {"big", library.NoGate, 1}, {"small", 2, 0}} {
		res, err := lib.Search(ctx, library.Query{Vector: v, K: 1, WholeDomain: 5, Domain: tc.domain, MinRelevance: &tc.gate})
		if err != nil || len(res) != tc.want {
			t.Errorf("domain %s, gate %v: %d results, %v; want %d", tc.domain, tc.gate, len(res), err, tc.want)
		}
	}
}
