package store

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"
)

// The first centre stored for a space stays: a second process racing to
// create the space gets the first one's back.
func TestSpaces(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), FileName), Options{})
	if _, err := s.GetSpace(ctx, "hash:4"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown space: %v", err)
	}
	first := []float32{0.5, -1, 2, 0}
	got, err := s.PutSpace(ctx, SpaceStats{Name: "hash:4", Mean: first})
	if err != nil || !slices.Equal(got.Mean, first) {
		t.Fatalf("PutSpace = %+v, %v", got, err)
	}
	got, err = s.PutSpace(ctx, SpaceStats{Name: "hash:4", Mean: []float32{9, 9, 9, 9}})
	if err != nil || !slices.Equal(got.Mean, first) {
		t.Errorf("second PutSpace = %+v, %v; want the first centre", got, err)
	}
	for _, bad := range []SpaceStats{{Name: "", Mean: first}, {Name: "x"}, {Name: "x", Mean: []float32{float32(math.NaN())}}} {
		if _, err := s.PutSpace(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutSpace(%+v) = %v; want ErrInvalid", bad, err)
		}
	}
	// A code names its space.
	if _, _, err := s.PutExperience(ctx, Experience{Text: "t", Confidence: 0.5, Code: code(1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a code without a space: %v", err)
	}
	e, _, err := s.PutExperience(ctx, Experience{Text: "t", Confidence: 0.5, Code: code(1), Space: "hash:4"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetCodes(ctx, []CodeUpdate{{ID: e.ID, Code: code(2), Space: "model:m"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetExperience(ctx, e.ID); got.Space != "model:m" || !slices.Equal(got.Code, code(2)) {
		t.Errorf("after SetCodes: space %q", got.Space)
	}
	sample, err := s.SampleExperiences(ctx, "model:m", 10)
	if err != nil || len(sample) != 1 {
		t.Errorf("SampleExperiences = %d, %v", len(sample), err)
	}
}
