package store

import (
	"context"
	"testing"
)

// An experience keeps the confidence it was created with as its prior,
// whatever updates do to its confidence, and keeps its key normalised.
func TestPriorAndKey(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	e, _, err := s.PutExperience(ctx, Experience{Text: "Multiply inches by 2.54.", Key: "  Convert 3 inches\r\nto cm. ", Confidence: 0.6})
	if err != nil {
		t.Fatal(err)
	}
	if e.Prior != 0.6 || e.Key != "Convert 3 inches\nto cm." {
		t.Errorf("stored prior %v key %q; want 0.6 and the normalised key", e.Prior, e.Key)
	}
	conf := 0.9
	if _, err := s.UpdateExperience(ctx, e.ID, Update{Confidence: &conf}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetExperience(ctx, e.ID)
	if err != nil || got.Confidence != 0.9 || got.Prior != 0.6 || got.Key != e.Key {
		t.Errorf("after an update: %+v, %v; want confidence 0.9, prior 0.6, the key", got, err)
	}
	if _, _, err := s.PutExperience(ctx, Experience{Text: "other", Confidence: 0.5, Prior: 1.5}); err == nil {
		t.Error("a prior above 1 was accepted")
	}
}
