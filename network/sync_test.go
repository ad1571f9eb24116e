package network

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
	"golang.org/x/mod/sumdb/tlog"
)

// countAdmit is an Admit that counts what it is handed.
type countAdmit struct {
	mu sync.Mutex // protects n
	n  int
}

func (c *countAdmit) admit(ctx context.Context, r Record, trusted bool) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return Admitted, nil
}

func (c *countAdmit) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// startSyncer opens a syncer of one peer and runs it until the test ends
// or the returned func is called.
func startSyncer(t *testing.T, st *State, dir string, p Peer, admit *countAdmit) (*Syncer, func()) {
	t.Helper()
	return runSyncer(t, SyncConfig{Network: "hanzo", Peers: []Peer{p}, Interval: 10 * time.Millisecond,
		Dir: dir, State: st, Admit: admit.admit})
}

// runSyncer opens a syncer of cfg and runs it until the test ends or the
// returned func is called (which also closes it).
func runSyncer(t *testing.T, cfg SyncConfig) (*Syncer, func()) {
	t.Helper()
	s, err := NewSyncer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			s.Close()
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// openTestState opens the follow state state.db in dir, closed when the
// test ends (after the syncers it started stop).
func openTestState(tb testing.TB, dir string) *State {
	tb.Helper()
	st, err := OpenState(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A syncer's state survives a restart: it resumes where it stopped, does
// not believe the peer's log over its signed past when the log shrinks,
// and keeps the evidence when the log shows another history.
func TestSyncResumesAndCatchesForks(t *testing.T) {
	dir := t.TempDir()
	id := testIdentity(t, "nodeA")
	first := openTestLog(t, id, filepath.Join(dir, "a1.db"))
	appendN(t, first, id, 0, 3)
	sw := &swappable{src: first}
	peer := Peer{URL: serve(t, sw).Base, Key: id.VerifierKey, Trusted: true}
	st := openTestState(t, dir)

	var admitted countAdmit
	s, stop := startSyncer(t, st, dir, peer, &admitted)
	waitFor(t, "three records admitted", func() bool { return admitted.count() == 3 })
	waitFor(t, "state saved", func() bool { fs, _, _ := st.Follow(context.Background(), id.VerifierKey); return fs.Next == 3 })
	stop()
	if ls := s.Logs()[0]; ls.State != PeerOK || ls.Size != 3 || ls.Lag != 0 || ls.Mirrored != 3 {
		t.Errorf("status %+v; want ok at 3, mirrored", ls)
	}

	// The node restarted with the same key and an empty log: stale.
	sw.set(openTestLog(t, id, filepath.Join(dir, "a2.db")))
	s, stop = startSyncer(t, st, dir, peer, &admitted)
	if ls := s.Logs()[0]; ls.Next != 3 {
		t.Fatalf("restarted at %d; want 3", ls.Next)
	}
	waitFor(t, "the shrunk log refused", func() bool { return s.Logs()[0].Rejected[RejectStale] > 0 })
	stop()

	// It then signs another history past the accepted size: a fork.
	other := openTestLog(t, id, filepath.Join(dir, "a3.db"))
	appendN(t, other, id, 10, 15)
	sw.set(other)
	s, stop = startSyncer(t, st, dir, peer, &admitted)
	waitFor(t, "the fork caught", func() bool { return s.Logs()[0].State == PeerForked })
	stop()
	if ls := s.Logs()[0]; ls.Fork == nil || ls.Fork.Old == "" || ls.Fork.New == "" {
		t.Errorf("no fork evidence: %+v", ls)
	}
	if n := admitted.count(); n != 3 {
		t.Errorf("%d records admitted; want the first log's 3 only", n)
	}

	// The evidence is kept: a restart does not follow the log again.
	s, stop = startSyncer(t, st, dir, peer, &admitted)
	defer stop()
	if ls := s.Logs()[0]; ls.State != PeerForked || ls.Fork == nil {
		t.Errorf("after restart: %+v; want forked, with evidence", ls)
	}
}

// fakeLibrary keeps experiences in memory, as library.Library would
// (same id for the same domain and text).
type fakeLibrary struct {
	es map[string]store.Experience
}

func (l *fakeLibrary) Add(ctx context.Context, e store.Experience) (store.Experience, bool, error) {
	e.ID = store.ExperienceID(e.Domain, e.Text)
	if got, ok := l.es[e.ID]; ok {
		return got, false, nil
	}
	l.es[e.ID] = e
	return e, true, nil
}

func (l *fakeLibrary) Update(ctx context.Context, id string, u store.Update) (store.Experience, error) {
	e := l.es[id]
	if u.Confidence != nil {
		e.Confidence = *u.Confidence
	}
	if u.Status != nil {
		e.Status = *u.Status
	}
	l.es[id] = e
	return e, nil
}

func (l *fakeLibrary) Delete(ctx context.Context, id string) error {
	if _, ok := l.es[id]; !ok {
		return store.ErrNotFound
	}
	delete(l.es, id)
	return nil
}

func (l *fakeLibrary) GetExperience(ctx context.Context, id string) (store.Experience, error) {
	e, ok := l.es[id]
	if !ok {
		return store.Experience{}, store.ErrNotFound
	}
	return e, nil
}

// The same experience from several authors counts once per author, at
// the median of their confidences; an untrusted author's is quarantined.
func TestAdmitMedianOncePerAuthor(t *testing.T) {
	ctx := context.Background()
	st := openTestState(t, t.TempDir())
	lib := &fakeLibrary{es: map[string]store.Experience{}}
	a := &Admitter{Network: "hanzo", Library: lib, State: st}
	text := "Close response bodies."
	sid := store.ExperienceID("code.go", text)
	ids := map[string]Identity{}
	rec := func(author string, conf float64) Record {
		id, ok := ids[author]
		if !ok {
			id = testIdentity(t, author)
			ids[author] = id
		}
		r, err := Sign(id.Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go", Text: text, Confidence: conf, Time: t0}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tt := range []struct {
		r       Record
		trusted bool
		want    string
		conf    float64
	}{
		{rec("nodeA", 0.2), true, Admitted, 0.2},
		{rec("nodeB", 0.9), true, Admitted, 0.55},
		{rec("nodeC", 0.8), true, Admitted, 0.8},
		{rec("nodeA", 0.2), true, Admitted, 0.8}, // again: still one of three
		// Another key of the same name is another author.
		{func() Record { delete(ids, "nodeA"); return rec("nodeA", 0.2) }(), true, Admitted, 0.5},
		{rec("nodeX", 0.0), false, Quarantine, 0.5},
	} {
		got, err := a.Admit(ctx, tt.r, tt.trusted)
		if err != nil || got != tt.want {
			t.Fatalf("admit %s: %q, %v; want %q", tt.r.Author, got, err, tt.want)
		}
		if c := lib.es[sid].Confidence; c != tt.conf {
			t.Errorf("after %s: confidence %v; want %v", tt.r.Author, c, tt.conf)
		}
	}
	if e := lib.es[sid]; e.SourceNode != "nodeA" || len(lib.es) != 1 {
		t.Errorf("library %+v; want one experience from nodeA", lib.es)
	}
	q, n, err := st.ListQuarantine(ctx, 10)
	if err != nil || n != 1 || q[0].Author != AuthorID(rec("nodeX", 0)) {
		t.Errorf("quarantine %+v (%d), %v; want nodeX's record", q, n, err)
	}
	other := rec("nodeA", 0.5)
	other.Experience.Network = "other"
	if got, _ := a.Admit(ctx, other, true); got != WrongNetwork {
		t.Errorf("a record of another network: %q", got)
	}

	// This node's own lesson keeps its confidence, whoever else has it.
	mine := store.Experience{Text: "Mine.", Domain: "code.go", Confidence: 0.3}
	lib.Add(ctx, mine)
	r, _ := Sign(testIdentity(t, "nodeB").Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go", Text: "Mine.", Confidence: 1, Time: t0}})
	if _, err := a.Admit(ctx, r, true); err != nil {
		t.Fatal(err)
	}
	if c := lib.es[store.ExperienceID("code.go", "Mine.")].Confidence; c != 0.3 {
		t.Errorf("own lesson's confidence %v; want 0.3 kept", c)
	}
	for id, want := range map[string]bool{sid: true, store.ExperienceID("code.go", "Mine."): false} {
		if got, err := st.Admitted(ctx, id); err != nil || got != want {
			t.Errorf("admitted(%s) = %v, %v; want %v (not this node's to publish)", id, got, err, want)
		}
	}
}

// countCheckpoints counts the checkpoints asked of its log.
type countCheckpoints struct {
	TileSource
	n atomic.Int32
}

func (s *countCheckpoints) Checkpoint(ctx context.Context) ([]byte, error) {
	s.n.Add(1)
	return s.TileSource.Checkpoint(ctx)
}

// withholdEntries serves its log's checkpoint and hash tiles but none of
// the entries they cover.
type withholdEntries struct{ TileSource }

func (s withholdEntries) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if t.L == EntriesLevel {
		return nil, ErrNotFound
	}
	return s.TileSource.ReadTile(ctx, t)
}

// A log that signs a tree and then withholds what it covers is held to
// it: counted as "missing", backed off and in the end dropped, never "ok";
// a log with no checkpoint yet stays "ok", with nothing to take.
func TestSyncHoldsALogToWhatItSigned(t *testing.T) {
	dir := t.TempDir()
	st := openTestState(t, dir)
	ls, admitted := followUntilDropped(t, dir, st, func(l TileSource) TileSource { return withholdEntries{l} }, 3)
	if ls.Rejected[RejectMissing] != 3 || admitted != 0 {
		t.Errorf("status %+v, %d admitted; want 3 syncs refused as missing, nothing admitted", ls, admitted)
	}

	// A log that has signed nothing yet withholds nothing.
	fresh := testIdentity(t, "nodeB")
	asked := &countCheckpoints{TileSource: openTestLog(t, fresh, filepath.Join(dir, "b.db"))}
	none := Peer{URL: serve(t, asked).Base, Key: fresh.VerifierKey, Trusted: true}
	var nothing countAdmit
	s, stop := runSyncer(t, SyncConfig{Network: "hanzo", Peers: []Peer{none}, Interval: time.Millisecond,
		Dir: dir, State: st, Admit: nothing.admit, MaxFailures: 3})
	waitFor(t, "more syncs of the empty log than failures allowed", func() bool { return asked.n.Load() > 5 })
	stop()
	if ls := s.Logs()[0]; ls.State != PeerOK || len(ls.Rejected) != 0 {
		t.Errorf("a log without a checkpoint: %+v; want ok, nothing refused", ls)
	}
}

// oversizeTiles serves hash tiles padded past MaxTileBytes.
type oversizeTiles struct{ TileSource }

func (s oversizeTiles) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	b, err := s.TileSource.ReadTile(ctx, t)
	if err == nil && t.L != EntriesLevel {
		b = append(b, make([]byte, MaxTileBytes)...)
	}
	return b, err
}

// A tile over its bound is refused as too_large, as a record over its
// bound is, not as some other invalid data.
func TestSyncRefusesOversizedTilesAsTooLarge(t *testing.T) {
	dir := t.TempDir()
	ls, admitted := followUntilDropped(t, dir, openTestState(t, dir), func(l TileSource) TileSource { return oversizeTiles{l} }, 2)
	if ls.Rejected[RejectTooLarge] != 2 || ls.Rejected[RejectInvalid] != 0 || admitted != 0 {
		t.Errorf("status %+v, %d admitted; want 2 syncs refused as too_large", ls, admitted)
	}
}

// followUntilDropped follows a log of three records served through wrap
// until the syncer drops it after maxFailures syncs in a row, and returns
// the log's last status and how many records were admitted.
func followUntilDropped(t *testing.T, dir string, st *State, wrap func(TileSource) TileSource, maxFailures int) (LogStatus, int) {
	t.Helper()
	id := testIdentity(t, "nodeA")
	l := openTestLog(t, id, filepath.Join(dir, "a.db"))
	appendN(t, l, id, 0, 3)
	p := Peer{URL: serve(t, wrap(l)).Base, Key: id.VerifierKey, Trusted: true}
	var admitted countAdmit
	s, stop := runSyncer(t, SyncConfig{Network: "hanzo", Peers: []Peer{p}, Interval: time.Millisecond,
		Dir: dir, State: st, Admit: admitted.admit, MaxFailures: maxFailures})
	waitFor(t, "the log dropped", func() bool { return s.Logs()[0].State == PeerDropped })
	stop()
	return s.Logs()[0], admitted.count()
}
