package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
)

func testSpaces(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	if _, err := s.GetSpace(ctx, "m"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSpace(missing) err = %v; want ErrNotFound", err)
	}
	first, err := s.PutSpace(ctx, store.SpaceStats{Name: "m", Mean: []float32{1, -2.5, 3}})
	if err != nil || !slices.Equal(first.Mean, []float32{1, -2.5, 3}) {
		t.Fatalf("PutSpace = %+v, %v", first, err)
	}
	// The first centre stored wins.
	again, err := s.PutSpace(ctx, store.SpaceStats{Name: "m", Mean: []float32{9, 9, 9}})
	if err != nil || !slices.Equal(again.Mean, first.Mean) {
		t.Errorf("second PutSpace = %+v, %v; want the first", again, err)
	}
	if _, err := s.PutSpace(ctx, store.SpaceStats{Name: "", Mean: []float32{1}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutSpace without a name err = %v; want ErrInvalid", err)
	}
}

func testCodes(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	es := seed(t, s, 6, "c") // all in hash:8
	retired := store.StatusRetired
	if _, err := s.UpdateExperience(ctx, es[0].ID, store.Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	sample, err := s.SampleExperiences(ctx, "hash:8", 10)
	if err != nil || len(sample) != 5 {
		t.Fatalf("SampleExperiences = %d, %v; want the 5 active", len(sample), err)
	}
	for _, e := range sample {
		if e.ID == es[0].ID {
			t.Errorf("sample holds the retired experience")
		}
	}
	if got, _ := s.SampleExperiences(ctx, "hash:8", 2); len(got) != 2 {
		t.Errorf("SampleExperiences(2) = %d; want 2", len(got))
	}
	if err := s.SetCodes(ctx, []store.CodeUpdate{{ID: es[1].ID, Code: Code(7), Space: "new"}, {ID: "gone", Code: Code(1), Space: "new"}}); err != nil {
		t.Fatal(err)
	}
	for sp, want := range map[string]int{"hash:8": 5, "new": 1} {
		if n, err := s.CountCodes(ctx, sp); err != nil || n != want {
			t.Errorf("CountCodes(%s) = %d, %v; want %d", sp, n, err, want)
		}
	}
	if got, _ := s.GetExperience(ctx, es[1].ID); got.Space != "new" || !slices.Equal(got.Code, Code(7)) {
		t.Errorf("after SetCodes: %+v", got)
	}
	if err := s.SetCodes(ctx, []store.CodeUpdate{{ID: es[1].ID, Space: "new"}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("SetCodes without a code err = %v; want ErrInvalid", err)
	}
}

func testPendingCodes(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	es := seed(t, s, 3, "p")
	if err := s.PutPendingCodes(ctx, []store.CodeUpdate{{ID: es[0].ID, Code: Code(9), Space: "next"}, {ID: es[1].ID, Code: Code(8), Space: "next"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitPendingCodes(ctx, "next"); !errors.Is(err, store.ErrIncomplete) {
		t.Fatalf("commit with one missing err = %v; want ErrIncomplete", err)
	}
	if got, _ := s.GetExperience(ctx, es[0].ID); got.Space != "hash:8" {
		t.Errorf("a refused commit changed a code: %+v", got)
	}
	if err := s.PutPendingCodes(ctx, []store.CodeUpdate{{ID: es[2].ID, Code: Code(6), Space: "next"}}); err != nil {
		t.Fatal(err)
	}
	pending := map[string][]byte{}
	if err := s.PendingCodes(ctx, "next", func(id string, c []byte) error { pending[id] = c; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pending) != 3 || !slices.Equal(pending[es[0].ID], Code(9)) {
		t.Errorf("PendingCodes = %d codes; want 3", len(pending))
	}
	before, _ := s.LastChange(ctx)
	if err := s.CommitPendingCodes(ctx, "next"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetExperience(ctx, es[2].ID); got.Space != "next" || !slices.Equal(got.Code, Code(6)) {
		t.Errorf("after commit: %+v", got)
	}
	if n, _ := s.CountCodes(ctx, "next"); n != 3 {
		t.Errorf("CountCodes(next) = %d; want 3", n)
	}
	if ids, _, err := s.Changes(ctx, before, 0); err != nil || len(ids) != 3 {
		t.Errorf("changes of the commit = %v, %v; want the 3 ids", ids, err)
	}
	n := 0
	if err := s.PendingCodes(ctx, "next", func(string, []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("pending after commit = %d, %v; want none", n, err)
	}
}

// Issue 25: committing one space's pending codes leaves those of another
// space pending.
func testPendingCodesOtherSpace(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	es := seed(t, s, 3, "p")
	// es[2] has its code in "next" already, and a pending one in "later".
	if err := s.SetCodes(ctx, []store.CodeUpdate{{ID: es[2].ID, Code: Code(5), Space: "next"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPendingCodes(ctx, []store.CodeUpdate{{ID: es[0].ID, Code: Code(9), Space: "next"},
		{ID: es[1].ID, Code: Code(8), Space: "next"}, {ID: es[2].ID, Code: Code(7), Space: "later"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitPendingCodes(ctx, "next"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountCodes(ctx, "next"); n != 3 {
		t.Errorf("CountCodes(next) = %d; want 3", n)
	}
	pending := func(space string) map[string][]byte {
		t.Helper()
		got := map[string][]byte{}
		if err := s.PendingCodes(ctx, space, func(id string, c []byte) error { got[id] = c; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := pending("next"); len(got) != 0 {
		t.Errorf("pending in next after its commit = %d; want none", len(got))
	}
	if got := pending("later"); len(got) != 1 || !slices.Equal(got[es[2].ID], Code(7)) {
		t.Errorf("pending in later after next's commit = %d codes; want es[2]'s", len(got))
	}
	// What stayed pending commits in its turn.
	if err := s.PutPendingCodes(ctx, []store.CodeUpdate{{ID: es[0].ID, Code: Code(4), Space: "later"}, {ID: es[1].ID, Code: Code(3), Space: "later"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitPendingCodes(ctx, "later"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetExperience(ctx, es[2].ID); got.Space != "later" || !slices.Equal(got.Code, Code(7)) {
		t.Errorf("after later's commit: %+v", got)
	}
}

func testVotes(t *testing.T, open Open) {
	ctx := context.Background()
	clk := NewClock()
	s := open(t, Options{Clock: clk})
	e := seed(t, s, 1, "x")[0]
	put := func(voter, trace string, up bool) {
		t.Helper()
		clk.Advance(time.Second)
		if err := s.PutVote(ctx, store.Vote{ExperienceID: e.ID, Voter: voter, TraceID: trace, Up: up}); err != nil {
			t.Fatal(err)
		}
	}
	put("alice", "t1", true)
	put("bob", "t1", true)
	put("carol", "t2", false)
	put("bob", "t1", false)  // regrade: replaces
	put("alice", "t3", true) // same voter, other trace: counted once
	vs, err := s.Votes(ctx, e.ID)
	if err != nil || len(vs) != 4 {
		t.Errorf("Votes = %d, %v; want 4 (regrade replaced)", len(vs), err)
	}
	if tally, err := s.Tally(ctx, e.ID); err != nil || tally != (store.Tally{Up: 1, Down: 2}) {
		t.Errorf("Tally = %+v, %v; want {1 2}", tally, err)
	}
	put("alice", "t4", false)
	if tally, _ := s.Tally(ctx, e.ID); tally != (store.Tally{Up: 0, Down: 3}) {
		t.Errorf("Tally after alice's down = %+v; want {0 3}", tally)
	}
	if tally, err := s.Tally(ctx, "none"); err != nil || tally != (store.Tally{}) {
		t.Errorf("Tally(none) = %+v, %v", tally, err)
	}
	if err := s.PutVote(ctx, store.Vote{ExperienceID: "none", Voter: "v"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("vote on missing err = %v; want ErrNotFound", err)
	}
	if err := s.PutVote(ctx, store.Vote{ExperienceID: e.ID}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("vote without voter err = %v; want ErrInvalid", err)
	}
}

// testConcurrentVotes: many voters grading at once, each twice, are each
// counted once.
func testConcurrentVotes(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	e := seed(t, s, 1, "v")[0]
	const voters = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*voters)
	for i := range voters {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fb := store.Feedback{TraceID: "tr", Voter: fmt.Sprint("voter-", i), Grade: 1}
				errs <- s.RecordFeedback(ctx, fb, i%4 != 0, []string{e.ID})
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if tally, err := s.Tally(ctx, e.ID); err != nil || tally != (store.Tally{Up: 30, Down: 10}) {
		t.Errorf("Tally = %+v, %v; want {30 10}", tally, err)
	}
}

func testFeedback(t *testing.T, open Open) {
	ctx := context.Background()
	clk := NewClock()
	s := open(t, Options{Clock: clk})
	e := seed(t, s, 1, "f")[0]
	fb := store.Feedback{TraceID: "tr-1", Voter: "alice", Grade: 0.9, Comment: "good", Correction: "c"}
	if err := s.RecordFeedback(ctx, fb, true, []string{e.ID, "gone"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := s.RecordFeedback(ctx, store.Feedback{TraceID: "tr-2", Voter: "bob", Grade: 0.1}, false, []string{e.ID}); err != nil {
		t.Fatal(err)
	}
	if tally, _ := s.Tally(ctx, e.ID); tally != (store.Tally{Up: 1, Down: 1}) {
		t.Errorf("Tally = %+v; want {1 1}", tally)
	}
	pend, err := s.PendingFeedback(ctx, 10)
	if err != nil || len(pend) != 2 {
		t.Fatalf("PendingFeedback = %d, %v; want 2", len(pend), err)
	}
	p := pend[0]
	if p.TraceID != "tr-1" || p.Voter != "alice" || p.Grade != 0.9 || p.Comment != "good" || p.Correction != "c" ||
		p.State != store.FeedbackPending || !p.UpdatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)) {
		t.Errorf("pending[0] = %+v", p)
	}
	// A regrade after the read keeps the record pending.
	clk.Advance(time.Second)
	fb.Grade = 0.8
	if err := s.RecordFeedback(ctx, fb, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFeedback(ctx, p.TraceID, p.Voter, p.UpdatedAt, store.FeedbackDone); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFeedback(ctx, "tr-2", "bob", pend[1].UpdatedAt, store.FeedbackSkipped); err != nil {
		t.Fatal(err)
	}
	pend, err = s.PendingFeedback(ctx, 10)
	if err != nil || len(pend) != 1 || pend[0].Voter != "alice" || pend[0].Grade != 0.8 {
		t.Errorf("PendingFeedback after marks = %+v, %v; want alice's regrade", pend, err)
	}
	if err := s.MarkFeedback(ctx, "tr-1", "alice", pend[0].UpdatedAt, "odd"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("MarkFeedback(bad state) err = %v; want ErrInvalid", err)
	}
	if err := s.RecordFeedback(ctx, store.Feedback{TraceID: "t", Voter: "v", Grade: 2}, true, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RecordFeedback(grade 2) err = %v; want ErrInvalid", err)
	}
}

func testTraces(t *testing.T, open Open) {
	ctx := context.Background()
	clk := NewClock()
	s := open(t, Options{Clock: clk, MaxTraces: 3, TraceMaxAge: time.Hour})
	tr := store.Trace{ID: "t0", Query: "q", Domain: "d", ExperienceIDs: []string{"a", "b"}, Model: "m", Answer: "ans"}
	if err := s.PutTrace(ctx, tr); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTrace(ctx, "t0")
	if err != nil {
		t.Fatal(err)
	}
	if got.Query != "q" || got.Answer != "ans" || !slices.Equal(got.ExperienceIDs, tr.ExperienceIDs) ||
		!got.CreatedAt.Equal(clk.Now()) || got.Model != "m" || got.Domain != "d" {
		t.Errorf("GetTrace = %+v", got)
	}
	tr.Answer = "final"
	if err := s.PutTraces(ctx, []store.Trace{tr}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetTrace(ctx, "t0"); got.Answer != "final" {
		t.Errorf("answer = %q; want final", got.Answer)
	}
	for i := 1; i <= 4; i++ {
		clk.Advance(time.Minute)
		if err := s.PutTrace(ctx, store.Trace{ID: fmt.Sprint("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := s.CountTraces(ctx); n != 3 {
		t.Errorf("count = %d; want 3", n)
	}
	for _, id := range []string{"t0", "t1"} {
		if _, err := s.GetTrace(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTrace(%s) err = %v; want pruned", id, err)
		}
	}
	if got, err := s.GetTrace(ctx, "t4"); err != nil || got.ExperienceIDs == nil {
		t.Errorf("GetTrace(t4) = %+v, %v", got, err)
	}
	if n, err := s.PruneTraces(ctx, clk.Now().Add(time.Hour-30*time.Second)); err != nil || n != 2 {
		t.Errorf("PruneTraces = %d, %v; want 2", n, err)
	}
	if err := s.PutTrace(ctx, store.Trace{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty id err = %v; want ErrInvalid", err)
	}
}

func testChanges(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	if ids, last, err := s.Changes(ctx, 0, 0); err != nil || len(ids) != 0 || last != 0 {
		t.Errorf("Changes on an empty store = %v, %d, %v", ids, last, err)
	}
	es := seed(t, s, 3, "ch")
	conf := 0.8
	if _, err := s.UpdateExperience(ctx, es[0].ID, store.Update{Confidence: &conf}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteExperience(ctx, es[1].ID); err != nil {
		t.Fatal(err)
	}
	head, err := s.LastChange(ctx)
	if err != nil || head != 5 {
		t.Fatalf("LastChange = %d, %v; want 5", head, err)
	}
	ids, last, err := s.Changes(ctx, 0, 0)
	if err != nil || last != 5 || !slices.Equal(ids, []string{es[0].ID, es[1].ID, es[2].ID}) {
		t.Errorf("Changes(0) = %v, %d, %v; want the three ids in first-change order, 5", ids, last, err)
	}
	ids, last, err = s.Changes(ctx, 1, 2)
	if err != nil || last != 3 || !slices.Equal(ids, []string{es[1].ID, es[2].ID}) {
		t.Errorf("Changes(1, 2) = %v, %d, %v", ids, last, err)
	}
	if ids, last, err := s.Changes(ctx, 5, 0); err != nil || len(ids) != 0 || last != 5 {
		t.Errorf("Changes(head) = %v, %d, %v; want nothing, 5", ids, last, err)
	}
}

func testChangesPruned(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	seed(t, s, 5, "pr")
	if _, err := s.PruneChanges(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Changes(ctx, 1, 0); !errors.Is(err, store.ErrChangesPruned) {
		t.Errorf("Changes behind the pruned rows err = %v; want ErrChangesPruned", err)
	}
	if ids, last, err := s.Changes(ctx, 3, 0); err != nil || len(ids) != 2 || last != 5 {
		t.Errorf("Changes(3) = %v, %d, %v; want the last 2", ids, last, err)
	}
	if head, err := s.LastChange(ctx); err != nil || head != 5 {
		t.Errorf("LastChange after pruning = %d, %v; want 5", head, err)
	}
	if _, err := s.PruneChanges(ctx, 0); err != nil {
		t.Errorf("PruneChanges(default) = %v", err)
	}
}
