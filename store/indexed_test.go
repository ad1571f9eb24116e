package store

import (
	"context"
	"testing"
)

// EachIndexed visits what EachExperience visits, in the same id order,
// with the fields an index holds and no others.
func TestEachIndexed(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	es := seed(t, s, 40, "code")
	retired := StatusRetired
	if _, err := s.UpdateExperience(ctx, es[3].ID, Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateExperience(ctx, es[5].ID, Update{Code: []byte{}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutExperience(ctx, Experience{Text: "uncoded", Domain: "other", Confidence: 0.3, Key: "a question"}); err != nil {
		t.Fatal(err)
	}
	var full []Experience
	if err := s.EachExperience(ctx, func(e Experience) error { full = append(full, e); return nil }); err != nil {
		t.Fatal(err)
	}
	i := 0
	err := s.EachIndexed(ctx, func(e Experience) error {
		if i >= len(full) {
			t.Fatalf("EachIndexed visits more than the %d stored", len(full))
		}
		f := full[i]
		want := Experience{ID: f.ID, Domain: f.Domain, Confidence: f.Confidence, Status: f.Status, Code: f.Code, Space: f.Space}
		if !equalExp(e, want) || e.Space != want.Space || e.Key != "" || e.Prior != 0 {
			t.Errorf("record %d: %+v; want %+v and nothing else", i, e, want)
		}
		i++
		return nil
	})
	if err != nil || i != len(full) {
		t.Fatalf("EachIndexed visited %d of %d: %v", i, len(full), err)
	}
}
