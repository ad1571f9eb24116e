package learn

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/dso-proxy/dso/library"

	"github.com/dso-proxy/dso/store"
)

// gradeAll grades one trace per feedback, each injecting e.
func gradeAll(t *testing.T, l *Learner, lib *library.Library, e store.Experience, fbs []store.Feedback) store.Experience {
	t.Helper()
	ctx := context.Background()
	for _, fb := range fbs {
		if err := lib.Store().(*store.SQLite).PutTrace(ctx, store.Trace{ID: fb.TraceID, Query: "q", Domain: "d", ExperienceIDs: []string{e.ID}, Model: "m", Answer: "a"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Grade(ctx, fb); err != nil {
			t.Fatal(err)
		}
	}
	got, err := lib.Store().(*store.SQLite).GetExperience(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Smoothing goes toward the lesson's initial confidence: four voters'
// up-votes give w·1 + (1−w)·prior with w = 4/5, not the compounded figure
// that smoothing toward the current confidence after each grade gave.
func TestVotesSmoothTowardInitialConfidence(t *testing.T) {
	lib := openLib(t, t.TempDir())
	ctx := context.Background()
	const prior = 0.6
	e, _, err := lib.Add(ctx, store.Experience{Text: "Convert units before comparing.", Domain: "d", Confidence: prior})
	if err != nil {
		t.Fatal(err)
	}
	if e.Prior != prior {
		t.Fatalf("prior %v; want %v", e.Prior, prior)
	}
	l := NewLearner(FeedbackConfig{Library: lib})
	var fbs []store.Feedback
	for i := range 4 {
		fbs = append(fbs, store.Feedback{TraceID: fmt.Sprintf("t%d", i), Voter: fmt.Sprintf("v%d", i), Grade: 1})
	}
	got := gradeAll(t, l, lib, e, fbs)
	w := 4.0 / DefaultMinVotes
	want := w*1 + (1-w)*prior
	compounded := prior
	for n := 1; n <= 4; n++ {
		w := float64(n) / DefaultMinVotes
		compounded = w + (1-w)*compounded
	}
	if math.Abs(got.Confidence-want) > 1e-9 {
		t.Errorf("after 4 up-votes: confidence %.4f; want %.4f (compounding would give %.4f)", got.Confidence, want, compounded)
	}
	if got.Prior != prior {
		t.Errorf("votes changed the prior to %v", got.Prior)
	}
}

// One voter grading ten answers counts as one voter: the lesson moves no
// further than one vote moves it, and it is neither retired nor driven
// toward 0 or 1.
func TestVotesOneVoterTenGrades(t *testing.T) {
	for _, grade := range []float64{0, 1} {
		t.Run(fmt.Sprint("grade=", grade), func(t *testing.T) {
			lib := openLib(t, t.TempDir())
			ctx := context.Background()
			const prior = 0.6
			e, _, err := lib.Add(ctx, store.Experience{Text: "Convert units before comparing.", Domain: "d", Confidence: prior})
			if err != nil {
				t.Fatal(err)
			}
			l := NewLearner(FeedbackConfig{Library: lib})
			var fbs []store.Feedback
			for i := range 10 {
				fbs = append(fbs, store.Feedback{TraceID: fmt.Sprintf("t%d", i), Voter: "mallory", Grade: grade})
			}
			got := gradeAll(t, l, lib, e, fbs)
			w := 1.0 / DefaultMinVotes
			want := w*grade + (1-w)*prior
			if math.Abs(got.Confidence-want) > 1e-9 || got.Status != store.StatusActive {
				t.Errorf("ten grades %v from one voter: %s at %.4f; want active at %.4f (one vote's worth)", grade, got.Status, got.Confidence, want)
			}
			// Five distinct voters do retire it (down) or settle it (up).
			fbs = fbs[:0]
			for i := range DefaultMinVotes {
				fbs = append(fbs, store.Feedback{TraceID: fmt.Sprintf("u%d", i), Voter: fmt.Sprintf("v%d", i), Grade: grade})
			}
			got = gradeAll(t, l, lib, e, fbs)
			wantStatus := store.StatusActive
			if grade == 0 {
				wantStatus = store.StatusRetired
			}
			if got.Status != wantStatus || got.Confidence != grade {
				t.Errorf("then %d voters: %s at %v; want %s at %v", DefaultMinVotes, got.Status, got.Confidence, wantStatus, grade)
			}
		})
	}
}
