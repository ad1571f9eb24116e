package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
)

// quarantineOf is the i'th test experience, quarantined by author.
func quarantineOf(i int) Experience {
	return Experience{Network: "hanzo", Domain: "code.go", Text: fmt.Sprintf("Lesson %d: check errors.", i), Confidence: 0.5, Time: t0}
}

// Issue 25: each author has a share of the quarantine, and the whole is
// capped; a record already kept is kept, whatever the counts.
func TestQuarantineShares(t *testing.T) {
	ctx := context.Background()
	st := openTestState(t, t.TempDir())
	st.maxQuarantine, st.maxPerAuthor = 5, 2
	for _, step := range []struct {
		author string
		i      int
		full   bool
	}{
		{"a+00000001", 0, false},
		{"a+00000001", 1, false},
		{"a+00000001", 2, true},  // a's share is taken
		{"a+00000001", 1, false}, // again: kept already, updated in place
		{"b+00000002", 2, false}, // b's share is b's: a cannot take it
		{"b+00000002", 3, false},
		{"c+00000003", 4, false},
		{"c+00000003", 5, true}, // the whole quarantine is full
		{"a+00000001", 0, false},
	} {
		err := st.Quarantine(ctx, step.author, quarantineOf(step.i))
		if full := errors.Is(err, ErrQuarantineFull); full != step.full || (err != nil && !full) {
			t.Errorf("%s quarantines record %d: %v; want full %v", step.author, step.i, err, step.full)
		}
	}
	if _, n, err := st.ListQuarantine(ctx, 10); err != nil || n != 5 {
		t.Errorf("quarantine holds %d, %v; want 5", n, err)
	}
	// Releasing frees the author's share.
	if err := st.Release(ctx, "a+00000001", quarantineOf(0)); err != nil {
		t.Fatal(err)
	}
	if err := st.Quarantine(ctx, "a+00000001", quarantineOf(2)); err != nil {
		t.Errorf("a quarantines record 2 after a release: %v", err)
	}
}

// Issue 25: the caps are checked and the record inserted at once: many
// authors quarantining together never push the quarantine past its cap.
func TestQuarantineCapHoldsUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	st := openTestState(t, t.TempDir())
	st.maxQuarantine, st.maxPerAuthor = 4, 4
	const writers = 32
	var wg sync.WaitGroup
	var kept, full atomic.Int32
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			err := st.Quarantine(ctx, fmt.Sprintf("w%02d+%08x", i, i), quarantineOf(i))
			switch {
			case err == nil:
				kept.Add(1)
			case errors.Is(err, ErrQuarantineFull):
				full.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	_, n, err := st.ListQuarantine(ctx, writers)
	if err != nil || n != 4 || kept.Load() != 4 || full.Load() != writers-4 {
		t.Errorf("quarantine holds %d (%v) after %d kept, %d full; want 4, 4, %d", n, err, kept.Load(), full.Load(), writers-4)
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Issue 25: a record the quarantine cannot keep is not lost: its log is
// not read past it, it is offered again, and it is admitted once its
// author gains standing. Another author's log goes on meanwhile, and the
// log held back is counted and warned of once, never dropped.
func TestSyncerHoldsBackWhatQuarantineCannotKeep(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idH, idQ, idR := testIdentity(t, "nodeH"), testIdentity(t, "nodeQ"), testIdentity(t, "nodeR")
	logH := openTestLog(t, idH, filepath.Join(dir, "h.db"))
	logQ := openTestLog(t, idQ, filepath.Join(dir, "q.db"))
	logR := openTestLog(t, idR, filepath.Join(dir, "r.db"))
	appendN(t, logQ, idQ, 0, 3)
	appendN(t, logR, idR, 10, 12)
	st := openTestState(t, dir)
	st.maxQuarantine, st.maxPerAuthor = 10, 2
	var mu sync.Mutex
	lib := &fakeLibrary{es: map[string]store.Experience{}}
	a := &Admitter{Network: "hanzo", Library: lib, State: st}
	admit := func(ctx context.Context, r Record, trusted bool) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return a.Admit(ctx, r, trusted)
	}
	held := func() int { mu.Lock(); defer mu.Unlock(); return len(lib.es) }
	var running atomic.Pointer[Syncer]
	a.Weight = func(author string) float64 {
		if s := running.Load(); s != nil {
			return s.AuthorWeight(author)
		}
		return 1
	}
	var logged lockedBuffer
	s, stop := runSyncer(t, SyncConfig{Network: "hanzo", Interval: 10 * time.Millisecond, Dir: dir, State: st, Admit: admit,
		MaxFailures: 2, Logger: slog.New(slog.NewTextHandler(&logged, nil)),
		Peers: []Peer{{URL: serve(t, logH).Base, Key: idH.VerifierKey, Trusted: true},
			{URL: serve(t, logQ).Base, Key: idQ.VerifierKey}, {URL: serve(t, logR).Base, Key: idR.VerifierKey}}})
	running.Store(s)
	logOf := func(name string) LogStatus {
		for _, ls := range s.Logs() {
			if ls.Author == name {
				return ls
			}
		}
		return LogStatus{}
	}
	quarantined := func(id Identity) int {
		es, _ := st.Quarantined(ctx, "hanzo", keyAuthorID(verifierOf(t, id)))
		return len(es)
	}
	waitFor(t, "nodeR's records quarantined", func() bool { return quarantined(idR) == 2 })
	// More turns held back than failures allowed: the log is not dropped.
	waitFor(t, "nodeQ's third record held back, turn after turn", func() bool {
		return logOf("nodeQ").Records[QuarantineFull] > 3
	})
	q := logOf("nodeQ")
	if q.Next != 2 || q.State == PeerDropped || len(q.Rejected) != 0 || quarantined(idQ) != 2 {
		t.Errorf("nodeQ's log %+v, %d quarantined; want read up to its third record, not dropped, nothing refused, 2 kept",
			q, quarantined(idQ))
	}
	if n := held(); n != 0 {
		t.Fatalf("library holds %d records of untrusted logs", n)
	}

	// nodeH vouches for nodeQ: its quarantine is released, and the record
	// held back is admitted in turn.
	if _, err := logH.Vouch(ctx, "hanzo", []string{idQ.VerifierKey}, t0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nodeQ's three records admitted", func() bool { return held() == 3 && logOf("nodeQ").Next == 3 })
	waitFor(t, "nodeQ's log ok again", func() bool { return logOf("nodeQ").State == PeerOK })
	stop()
	if n := quarantined(idQ); n != 0 {
		t.Errorf("nodeQ has %d records in quarantine; want none", n)
	}
	if n := strings.Count(logged.String(), "quarantine is full"); n != 1 {
		t.Errorf("warned %d times of the full quarantine; want once:\n%s", n, logged.String())
	}
}

// A log held back by a full quarantine is still checked against the
// other mirrors of it: a split view is caught all the same.
func TestSyncerCrossChecksAHeldLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idH1, idH2, idK := testIdentity(t, "nodeH1"), testIdentity(t, "nodeH2"), testIdentity(t, "nodeK")
	logH1 := openTestLog(t, idH1, filepath.Join(dir, "h1.db"))
	logH2 := openTestLog(t, idH2, filepath.Join(dir, "h2.db"))
	k1 := openTestLog(t, idK, filepath.Join(dir, "k1.db"))
	k2 := openTestLog(t, idK, filepath.Join(dir, "k2.db"))
	appendN(t, k1, idK, 0, 3)
	appendN(t, k2, idK, 10, 13)
	for _, l := range []*Log{logH1, logH2} {
		if _, err := l.Vouch(ctx, "hanzo", []string{idK.VerifierKey}, t0); err != nil {
			t.Fatal(err)
		}
	}
	vK := verifierOf(t, idK)
	h1 := multiHost(t, map[string]TileSource{"/log/hanzo": logH1, "/log/hanzo" + MirrorPath(vK): k1})
	h2 := multiHost(t, map[string]TileSource{"/log/hanzo": logH2, "/log/hanzo" + MirrorPath(vK): k2})
	st := openTestState(t, dir)
	st.maxPerAuthor = 1
	a := &Admitter{Network: "hanzo", Library: &fakeLibrary{es: map[string]store.Experience{}}, State: st}
	// Roots only: nodeK, whom both vouch for, has no standing here.
	s, stop := runSyncer(t, SyncConfig{Network: "hanzo", Interval: 10 * time.Millisecond, Dir: dir, State: st, Admit: a.Admit,
		Trust: TrustConfig{Depth: -1},
		Peers: []Peer{{URL: h1, Key: idH1.VerifierKey, Trusted: true}, {URL: h2, Key: idH2.VerifierKey, Trusted: true},
			{URL: h1 + "/log/hanzo" + MirrorPath(vK), Key: idK.VerifierKey}}})
	k := func() LogStatus {
		for _, ls := range s.Logs() {
			if ls.Author == "nodeK" {
				return ls
			}
		}
		return LogStatus{}
	}
	waitFor(t, "nodeK's split view caught while it is held back", func() bool { return k().State == PeerForked })
	stop()
	if ls := k(); ls.Next != 1 || ls.Records[Quarantine] != 1 || ls.Fork == nil {
		t.Errorf("nodeK %+v; want held back at its second record, and forked with evidence", ls)
	}
}
