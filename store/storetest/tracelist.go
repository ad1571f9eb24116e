package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
)

// ListTraces pages through traces newest first, with each trace's
// feedback summarised, and a trace stored between pages does not shift the
// later ones.
func testListTraces(t *testing.T, open Open) {
	ctx := context.Background()
	clk := NewClock()
	s := open(t, Options{Clock: clk})
	// t0 and t1 share a time; t2..t4 are a minute apart after them.
	for i := range 5 {
		if i >= 2 {
			clk.Advance(time.Minute)
		}
		if err := s.PutTrace(ctx, store.Trace{ID: fmt.Sprint("t", i), Query: fmt.Sprint("q", i), ExperienceIDs: []string{"e"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, fb := range []store.Feedback{{TraceID: "t3", Voter: "a", Grade: 1}, {TraceID: "t3", Voter: "b", Grade: 0.5}} {
		if err := s.RecordFeedback(ctx, fb, true, nil); err != nil {
			t.Fatal(err)
		}
	}

	page, next, err := s.ListTraces(ctx, store.TraceListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := listedIDs(page); !slices.Equal(got, []string{"t4", "t3"}) || next == "" {
		t.Fatalf("first page = %v, next %q; want [t4 t3] and a cursor", got, next)
	}
	if g := page[1]; g.Grades != 2 || g.Grade != 0.75 || g.Query != "q3" || !slices.Equal(g.ExperienceIDs, []string{"e"}) {
		t.Fatalf("t3 = %+v; want 2 grades averaging 0.75, its query and experience ids", g)
	}
	if page[0].Grades != 0 {
		t.Fatalf("t4 has %d grades; want 0", page[0].Grades)
	}

	clk.Advance(time.Minute)
	if err := s.PutTrace(ctx, store.Trace{ID: "new"}); err != nil {
		t.Fatal(err)
	}
	// t1 and t0 share a time: SQLite orders them by insertion, Redis by
	// id, both latest first here.
	page, next, err = s.ListTraces(ctx, store.TraceListOptions{Limit: 2, Before: next})
	if err != nil {
		t.Fatal(err)
	}
	if got := listedIDs(page); !slices.Equal(got, []string{"t2", "t1"}) || next == "" {
		t.Fatalf("second page = %v, next %q; want [t2 t1] and a cursor", got, next)
	}
	page, next, err = s.ListTraces(ctx, store.TraceListOptions{Limit: 2, Before: next})
	if err != nil {
		t.Fatal(err)
	}
	if got := listedIDs(page); !slices.Equal(got, []string{"t0"}) || next != "" {
		t.Fatalf("last page = %v, next %q; want [t0] and no cursor", got, next)
	}

	all, _, err := s.ListTraces(ctx, store.TraceListOptions{Limit: store.MaxTraceList + 100})
	if err != nil || len(all) != 6 {
		t.Fatalf("a limit past the bound: %d traces, %v; want all 6", len(all), err)
	}
	for _, bad := range []string{"x", "1", " 1.2", "1."} {
		if _, _, err := s.ListTraces(ctx, store.TraceListOptions{Before: bad}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("cursor %q: err = %v; want ErrInvalid", bad, err)
		}
	}
}

func listedIDs(ts []store.ListedTrace) []string {
	var ids []string
	for _, t := range ts {
		ids = append(ids, t.ID)
	}
	return ids
}

// An experience keeps its key (the question it was learned from) and its
// prior (the confidence it was created with, by default its confidence).
func testPriorAndKey(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	a, _, err := s.PutExperience(ctx, store.Experience{Text: "Convert inches by 2.54.", Key: "How many cm is 3 inches?", Confidence: 0.7})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.PutExperience(ctx, store.Experience{Text: "Miles are 1.609 km.", Confidence: 0.9, Prior: 0.4})
	if err != nil {
		t.Fatal(err)
	}
	conf := 0.2
	if _, err := s.UpdateExperience(ctx, a.ID, store.Update{Confidence: &conf}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetExperiences(ctx, []string{a.ID, b.ID})
	if err != nil || len(got) != 2 {
		t.Fatalf("%d experiences, %v", len(got), err)
	}
	for _, e := range got {
		switch e.ID {
		case a.ID:
			if e.Key != "How many cm is 3 inches?" || e.Prior != 0.7 || e.Confidence != conf {
				t.Errorf("a: key %q prior %v confidence %v; want its key, prior 0.7, confidence %v", e.Key, e.Prior, e.Confidence, conf)
			}
		case b.ID:
			if e.Key != "" || e.Prior != 0.4 {
				t.Errorf("b: key %q prior %v; want none and 0.4", e.Key, e.Prior)
			}
		}
	}
}
