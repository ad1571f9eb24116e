package store

import (
	"context"
	"errors"
	"maps"
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

// CountSpaces counts the codes of each space, and under "" the
// experiences without one, retired ones included.
func TestCountSpaces(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	if got, err := s.CountSpaces(ctx); err != nil || len(got) != 0 {
		t.Fatalf("CountSpaces of an empty store = %v, %v", got, err)
	}
	es := []Experience{
		{Text: "a", Confidence: 0.5, Code: code(1), Space: "hash:8"},
		{Text: "b", Confidence: 0.5, Code: code(2), Space: "hash:8", Status: StatusRetired},
		{Text: "c", Confidence: 0.5, Code: code(3), Space: "model:m"},
		{Text: "d", Confidence: 0.5},
	}
	if _, _, err := s.PutExperiences(ctx, es); err != nil {
		t.Fatal(err)
	}
	got, err := s.CountSpaces(ctx)
	want := map[string]int{"hash:8": 2, "model:m": 1, "": 1}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("CountSpaces = %v, %v; want %v", got, err, want)
	}
	if n, err := s.CountCodes(ctx, "hash:8"); err != nil || n != got["hash:8"] {
		t.Fatalf("CountCodes = %d, %v; CountSpaces says %d", n, err, got["hash:8"])
	}
}
