package learn

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

var hashEmb = providers.NewHashEmbedder(512, 7)

func embedFunc() library.Embedder { return library.EmbedFunc(hashEmb.Embed) }

func openLib(t *testing.T, dir string) *library.Library {
	t.Helper()
	st, err := store.OpenDir(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: library.Space{Name: "hash", Embedder: embedFunc()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	return lib
}

// addLesson stores text through the library with the hash embedder.
func addLesson(t *testing.T, lib *library.Library, text, domain string) store.Experience {
	t.Helper()
	ctx := context.Background()
	e, _, err := lib.Add(ctx, store.Experience{Text: text, Domain: domain, Confidence: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func putTrace(t *testing.T, lib *library.Library, id string, expIDs ...string) {
	t.Helper()
	err := lib.Store().(*store.SQLite).PutTrace(context.Background(), store.Trace{ID: id, Query: "q " + id, Domain: "d", ExperienceIDs: expIDs, Model: "m", Answer: "a"})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVotesUniqueVotersRegradeAndRetirement(t *testing.T) {
	lib := openLib(t, t.TempDir())
	ctx := context.Background()
	e := addLesson(t, lib, "Check the inputs before computing.", "d")
	l := NewLearner(FeedbackConfig{Library: lib})
	for i := 0; i < 6; i++ {
		putTrace(t, lib, fmt.Sprintf("t%d", i), e.ID)
	}
	tally := func() store.Tally {
		tl, err := lib.Store().(*store.SQLite).Tally(ctx, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	status := func() store.Experience {
		got, err := lib.Store().(*store.SQLite).GetExperience(ctx, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// One voter grading the same trace twice, and through another trace,
	// counts once: their latest grade.
	for _, fb := range []store.Feedback{{TraceID: "t0", Voter: "alice", Grade: 1}, {TraceID: "t0", Voter: "alice", Grade: 0.9}, {TraceID: "t1", Voter: "alice", Grade: 0.8}} {
		if err := l.Grade(ctx, fb); err != nil {
			t.Fatal(err)
		}
	}
	if got := tally(); got != (store.Tally{Up: 1}) {
		t.Fatalf("tally %+v; want one up-vote", got)
	}
	// A regrade replaces the earlier grade.
	if err := l.Grade(ctx, store.Feedback{TraceID: "t1", Voter: "alice", Grade: 0.1}); err != nil {
		t.Fatal(err)
	}
	if got := tally(); got != (store.Tally{Down: 1}) {
		t.Fatalf("after regrade: tally %+v; want one down-vote", got)
	}
	// Four more voters: 3 down, 1 up → 5 votes, 1 up: retired.
	for i, v := range []struct {
		voter string
		grade float64
	}{{"bob", 0.9}, {"carol", 0.2}, {"dave", 0.3}, {"erin", 0.69}} {
		if err := l.Grade(ctx, store.Feedback{TraceID: fmt.Sprintf("t%d", i+2), Voter: v.voter, Grade: v.grade}); err != nil {
			t.Fatal(err)
		}
		if i < 3 && status().Status != store.StatusActive {
			t.Fatalf("retired after only %d votes", i+2)
		}
	}
	got := status()
	if tl := tally(); tl != (store.Tally{Up: 1, Down: 4}) {
		t.Fatalf("tally %+v", tl)
	}
	if got.Status != store.StatusRetired || got.Confidence != 0.2 {
		t.Errorf("after 5 votes at 20%% approval: %s, confidence %v; want retired, 0.2", got.Status, got.Confidence)
	}
	// A retired experience is never returned by retrieval.
	c, _ := lib.Vector(ctx, e.Text)
	res, err := lib.Search(ctx, library.Query{Vector: c, K: 5, MinRelevance: &library.NoGate})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.ID == e.ID {
			t.Error("a retired experience was retrieved")
		}
	}
}

func TestRetirementThreshold(t *testing.T) {
	for _, tc := range []struct {
		up, down int
		retired  bool
	}{
		{4, 1, false}, // 80%
		{2, 2, false}, // 4 votes: too few to judge
		{3, 2, true},  // 60% < 66%
		{4, 2, false}, // 66.7% ≥ 66%
		{0, 5, true},
	} {
		conf, st := Score(0.5, store.Tally{Up: tc.up, Down: tc.down}, DefaultMinVotes, DefaultApproval)
		if (st == store.StatusRetired) != tc.retired {
			t.Errorf("%d up %d down: %s", tc.up, tc.down, st)
		}
		if n := tc.up + tc.down; n >= DefaultMinVotes && conf != float64(tc.up)/float64(n) {
			t.Errorf("%d up %d down: confidence %v; want the approval rate", tc.up, tc.down, conf)
		}
	}
}

func TestGradeRejectsBadInput(t *testing.T) {
	lib := openLib(t, t.TempDir())
	l := NewLearner(FeedbackConfig{Library: lib})
	if err := l.Grade(context.Background(), store.Feedback{TraceID: "nope", Voter: "v", Grade: 1}); !errors.Is(err, ErrUnknownTrace) {
		t.Errorf("unknown trace: %v", err)
	}
	putTrace(t, lib, "t")
	if err := l.Grade(context.Background(), store.Feedback{TraceID: "t", Voter: "v", Grade: 1.5}); !errors.Is(err, ErrBadGrade) {
		t.Errorf("grade 1.5: %v", err)
	}
}

// lessonChat is a fake model that distils "Lesson: <correction>" and
// counts calls.
type lessonChat struct {
	mu    sync.Mutex
	calls int
}

func (c *lessonChat) Chat(ctx context.Context, req ChatRequest) (string, Usage, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	user := req.Messages[len(req.Messages)-1].Content
	_, corr, ok := strings.Cut(user, "CORRECT ANSWER:\n")
	if !ok {
		return "Lesson: answer the question asked, briefly.", Usage{}, nil
	}
	return "Lesson: " + strings.TrimSpace(corr), Usage{}, nil
}

// Feedback accepted before a crash (no clean stop: the first store is
// abandoned open, the worker never ran) is distilled after a restart.
func TestFeedbackSurvivesCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	lib := openLib(t, dir)
	putTrace(t, lib, "tr1")
	chat := &lessonChat{}
	first := NewLearner(FeedbackConfig{Library: lib, Chat: chat})
	if err := first.Grade(ctx, store.Feedback{TraceID: "tr1", Voter: "v", Grade: 0, Correction: "The Zorblax port is 7431."}); err != nil {
		t.Fatal(err)
	}
	// "Crash": nothing is closed or drained. A new process opens the file.
	lib2 := openLib(t, dir)
	second := NewLearner(FeedbackConfig{Library: lib2, Chat: chat})
	n, err := second.DistillPending(ctx, 8)
	if err != nil || n != 1 {
		t.Fatalf("distilled %d, %v; want 1", n, err)
	}
	exps, _, err := lib2.Store().ListExperiences(ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(exps) != 1 || !strings.Contains(exps[0].Text, "Zorblax port is 7431") || exps[0].TraceID != "tr1" || exps[0].Domain != "d" {
		t.Fatalf("library after restart: %+v", exps)
	}
	if lib2.Len() != 1 {
		t.Errorf("lesson not indexed")
	}
	// Done is done: nothing left to distil, and a near-copy reinforces.
	if n, _ := second.DistillPending(ctx, 8); n != 0 {
		t.Errorf("distilled again: %d", n)
	}
	putTrace(t, lib2, "tr2")
	if err := second.Grade(ctx, store.Feedback{TraceID: "tr2", Voter: "w", Grade: 0, Correction: "The Zorblax port is 7431."}); err != nil {
		t.Fatal(err)
	}
	if n, _ := second.DistillPending(ctx, 8); n != 1 {
		t.Fatalf("second lesson: %d", n)
	}
	exps, _, _ = lib2.Store().ListExperiences(ctx, store.ListOptions{})
	if len(exps) != 1 || exps[0].Confidence <= 0.7 {
		t.Errorf("near-copy: %d experiences, confidence %v; want 1 reinforced", len(exps), exps[0].Confidence)
	}
}

// A low grade without a correction teaches nothing: skipped, no model call.
func TestLowGradeWithoutCorrectionIsSkipped(t *testing.T) {
	lib := openLib(t, t.TempDir())
	putTrace(t, lib, "tr")
	chat := &lessonChat{}
	l := NewLearner(FeedbackConfig{Library: lib, Chat: chat})
	ctx := context.Background()
	if err := l.Grade(ctx, store.Feedback{TraceID: "tr", Voter: "v", Grade: 0.2}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.DistillPending(ctx, 8); err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	if chat.calls != 0 || lib.Len() != 0 {
		t.Errorf("calls %d, library %d; want nothing", chat.calls, lib.Len())
	}
}
