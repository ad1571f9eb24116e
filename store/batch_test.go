package store

import (
	"context"
	"errors"
	"testing"
)

func TestPutExperiencesBatch(t *testing.T) {
	s := openTest(t, "", Options{})
	ctx := context.Background()
	got, created, err := s.PutExperiences(ctx, []Experience{
		{Text: "first lesson", Domain: "a", Confidence: 0.5},
		{Text: "second lesson", Domain: "a", Confidence: 0.6},
		{Text: "first lesson", Domain: "a", Confidence: 0.9}, // duplicate within the batch
	})
	if err != nil {
		t.Fatal(err)
	}
	if !created[0] || !created[1] || created[2] {
		t.Errorf("created %v; want [true true false]", created)
	}
	if got[2].ID != got[0].ID || got[2].Confidence != 0.5 {
		t.Errorf("duplicate returned %+v; want the first record", got[2])
	}

	// One bad record writes nothing.
	_, _, err = s.PutExperiences(ctx, []Experience{{Text: "third lesson", Confidence: 0.5}, {Text: "", Confidence: 0.5}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad batch: %v; want ErrInvalid", err)
	}
	if _, err := s.GetExperience(ctx, ExperienceID("", "third lesson")); !errors.Is(err, ErrNotFound) {
		t.Errorf("a record of a rejected batch was written: %v", err)
	}
}
