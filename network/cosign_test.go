package network

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// runWitnessed serves l with the cosignatures of witnesses, asking them
// until the test ends or the returned func is called.
func runWitnessed(t *testing.T, l *Log, witnesses ...*testWitness) (*WitnessedLog, func()) {
	t.Helper()
	var rs []RemoteWitness
	for _, w := range witnesses {
		rs = append(rs, w.remote())
	}
	wl, err := NewWitnessedLog(WitnessedLogConfig{Log: l, Witnesses: rs, Retry: 5 * time.Millisecond, MaxRetry: 20 * time.Millisecond,
		Client: &http.Client{Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		wl.Run(ctx)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return wl, stop
}

// cosignedBy reports whether the checkpoint src serves carries a valid
// cosignature of tw's, of size n.
func cosignedBy(t *testing.T, src TileSource, tw *testWitness, n int64) bool {
	t.Helper()
	msg, err := src.Checkpoint(context.Background())
	if err != nil {
		return false
	}
	nt, err := note.Open(msg, note.VerifierList(tw.verifier(t)))
	if err != nil {
		return false
	}
	c, err := ParseCheckpoint([]byte(nt.Text))
	return err == nil && c.Size == n
}

// A node's log asks its witnesses to cosign each checkpoint it signs, and
// serves the checkpoint with their cosignatures; a restarted one learns
// the size a witness cosigned from its 409 and is cosigned again; a
// witness that is down is retried, and holds up no append.
func TestWitnessedLogServesCosignatures(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := testIdentity(t, "nodeA")
	w1 := startWitness(t, "nodeW", dir, a)
	w2 := startWitness(t, "nodeV", dir, a)
	l := openTestLog(t, a, filepath.Join(dir, "a.db"))
	appendN(t, l, a, 0, 3)
	wl, stop := runWitnessed(t, l, w1, w2)
	waitFor(t, "both witnesses cosign 3", func() bool { return cosignedBy(t, wl, w1, 3) && cosignedBy(t, wl, w2, 3) })
	msg, _ := wl.Checkpoint(ctx)
	if c, err := OpenCheckpoint(msg, verifierOf(t, a), "nodeA/hanzo"); err != nil || c.Size != 3 {
		t.Fatalf("served checkpoint %+v, %v; want A's, still signed by it", c, err)
	}
	if got := bytes.Count(msg, []byte("\n— ")); got != 3 {
		t.Errorf("served checkpoint has %d signature lines; want A's and two cosignatures:\n%s", got, msg)
	}

	appendN(t, l, a, 3, 7)
	waitFor(t, "both witnesses cosign 7", func() bool { return cosignedBy(t, wl, w1, 7) && cosignedBy(t, wl, w2, 7) })
	for _, st := range wl.Status(ctx) {
		if st.State != CosignOK || st.Size != 7 || st.Failures != 0 || st.LastCosigned == nil {
			t.Errorf("status %+v; want ok at 7", st)
		}
	}
	stop()

	// Restarted: the log knows nothing of what its witnesses cosigned.
	appendN(t, l, a, 7, 9)
	wl, _ = runWitnessed(t, l, w1)
	waitFor(t, "the restarted log cosigned at 9", func() bool { return cosignedBy(t, wl, w1, 9) })

	// A witness down: appends go on, the checkpoint is served without
	// its cosignature, and it is asked again once it is back.
	w1.closed.Store(true)
	start := time.Now()
	appendN(t, l, a, 9, 12)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("an append took %v with a witness down", d)
	}
	if !waitUntil(func() bool { return l.Size() == 12 }) || cosignedBy(t, wl, w1, 12) {
		t.Fatal("the log is not at 12 without the witness")
	}
	waitFor(t, "the witness down reported", func() bool {
		st := wl.Status(ctx)[0]
		return st.State == CosignFailing && st.Failures > 1 && strings.Contains(st.LastError, "503")
	})
	w1.closed.Store(false)
	waitFor(t, "cosigned at 12 once the witness is back", func() bool { return cosignedBy(t, wl, w1, 12) })
}

func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// A follower that requires a witness quorum accepts a checkpoint only
// with valid cosignatures from that many of the witnesses it names; until
// then it keeps the checkpoint it accepted and takes in what that one
// covers. Cosignatures of other keys, forged ones, and one witness named
// twice count for nothing more.
func TestFollowerNeedsWitnessQuorum(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := testIdentity(t, "nodeA")
	w := startWitness(t, "nodeW", dir, a)
	x := startWitness(t, "nodeX", dir, a)
	l := openTestLog(t, a, filepath.Join(dir, "a.db"))
	appendN(t, l, a, 0, 3)
	sw := &swappable{src: l}
	fetch := serve(t, sw)
	follower := func(quorum int, ws ...note.Verifier) (*Follower, *[]int64) {
		var got []int64
		f, err := NewFollower(FollowConfig{Fetcher: fetch, Key: verifierOf(t, a), Origin: "nodeA/hanzo", MaxEntries: 1,
			Witnesses: ws, Quorum: quorum, Accept: func(_ context.Context, i int64, _ Record) error { got = append(got, i); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		return f, &got
	}
	wantUnwitnessed := func(what string, f *Follower, size int64, cosigned, quorum int) SyncResult {
		t.Helper()
		res, err := f.Sync(ctx)
		var uw *UnwitnessedError
		if !errors.As(err, &uw) || !errors.Is(err, ErrUnwitnessed) || uw.Unwitnessed != (Unwitnessed{Size: size, Cosigned: cosigned, Quorum: quorum}) {
			t.Errorf("%s: %v; want size %d unwitnessed, %d of %d", what, err, size, cosigned, quorum)
		}
		return res
	}

	f, got := follower(1, w.verifier(t))
	wantUnwitnessed("no cosignature", f, 3, 0, 1)
	if st := f.State(); st.Checkpoint != nil || len(*got) != 0 {
		t.Fatalf("accepted %q, took %v without the witness", st.Checkpoint, *got)
	}

	wl, stop := runWitnessed(t, l, w)
	sw.set(wl)
	waitFor(t, "W cosigns 3", func() bool { return cosignedBy(t, wl, w, 3) })
	if _, err := f.Sync(ctx); err != nil {
		t.Fatalf("a cosigned checkpoint: %v", err)
	}
	if st := f.State(); !bytes.Equal(st.Checkpoint, mustCheckpoint(t, wl)) || len(*got) != 1 {
		t.Fatalf("accepted %q, took %v; want the cosigned checkpoint, one entry", st.Checkpoint, *got)
	}

	// W stops answering; the log grows. The accepted tree's entries are
	// still taken in, one a sync; the new tree is not accepted.
	stop()
	appendN(t, l, a, 3, 5)
	wantUnwitnessed("a newer checkpoint W did not cosign", f, 5, 0, 1)
	wantUnwitnessed("again", f, 5, 0, 1)
	if len(*got) != 3 {
		t.Errorf("took %v; want the three entries of the accepted tree", *got)
	}
	if res, _ := f.Sync(ctx); res.Accepted != 0 || res.Size != 3 {
		t.Errorf("sync past the accepted tree: %+v; want nothing more", res)
	}

	// A forged cosignature of W's (its name and key hash), one by another
	// key named nodeW, and a real one of a witness not named.
	msg, _ := l.Checkpoint(ctx)
	forged := append(bytes.Clone(msg), cosignatureLine(t, w.id.Cosigner, verifierOf(t, a), msg, true)...)
	forged = append(forged, cosignatureLine(t, testIdentity(t, "nodeW").Cosigner, verifierOf(t, a), msg, false)...)
	sw.set(fixedCheckpoint{l, forged})
	wantUnwitnessed("forged cosignatures", f, 5, 0, 1)
	if !bytes.Contains(forged, []byte("\n— nodeW ")) || bytes.Count(forged, []byte("\n— ")) != 3 {
		t.Fatalf("forged checkpoint:\n%s", forged)
	}
	wlx, _ := runWitnessed(t, l, x)
	sw.set(wlx)
	waitFor(t, "X cosigns 5", func() bool { return cosignedBy(t, wlx, x, 5) })
	wantUnwitnessed("a witness not named", f, 5, 0, 1)

	// X named too, with a quorum of two: one is not enough; W named
	// twice is still one.
	f2, _ := follower(2, w.verifier(t), x.verifier(t))
	wantUnwitnessed("one of two", f2, 5, 1, 2)
	f3, _ := follower(2, w.verifier(t), w.verifier(t))
	wantUnwitnessed("W twice", f3, 5, 0, 2)
	wl, _ = runWitnessed(t, l, w, x)
	sw.set(wl)
	waitFor(t, "W and X cosign 5", func() bool { return cosignedBy(t, wl, w, 5) && cosignedBy(t, wl, x, 5) })
	if _, err := f2.Sync(ctx); err != nil {
		t.Errorf("two of two: %v", err)
	}
	if _, err := f.Sync(ctx); err != nil || f.State().Next != 4 {
		t.Errorf("W's cosignature back: %v, next %d; want accepted, taking entries again", err, f.State().Next)
	}
}

func mustCheckpoint(t *testing.T, src TileSource) []byte {
	t.Helper()
	msg, err := src.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// cosignatureLine is s's cosignature of msg, a checkpoint signed by the
// key of v, as a note signature line; corrupt flips a bit of the
// signature.
func cosignatureLine(t *testing.T, s note.Signer, v note.Verifier, msg []byte, corrupt bool) []byte {
	t.Helper()
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: n.Text}, s)
	if err != nil {
		t.Fatal(err)
	}
	line := signed[len(n.Text)+1:]
	if !corrupt {
		return line
	}
	sp := bytes.LastIndexByte(line, ' ')
	sig, err := base64.StdEncoding.DecodeString(string(line[sp+1 : len(line)-1]))
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	return fmt.Appendf(nil, "%s %s\n", line[:sp], base64.StdEncoding.EncodeToString(sig))
}

// fixedCheckpoint serves a log's tiles under the checkpoint msg.
type fixedCheckpoint struct {
	TileSource
	msg []byte
}

func (f fixedCheckpoint) Checkpoint(context.Context) ([]byte, error) { return f.msg, nil }

// A log that shows one history to its witness and another to a follower
// cannot get the other cosigned: the witness refuses it (409, then 422),
// so a follower that requires the witness's cosignature never accepts
// it, while one that does not takes it in. A follower that accepted the
// witnessed history and is then shown the other catches the fork.
func TestSplitViewNeedsWitness(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lid := testIdentity(t, "nodeL")
	w := startWitness(t, "nodeW", dir, lid)
	seen := openTestLog(t, lid, filepath.Join(dir, "seen.db")) // what the witness is shown
	appendN(t, seen, lid, 0, 2)
	other := openTestLog(t, lid, filepath.Join(dir, "other.db")) // what the follower is shown
	appendN(t, other, lid, 100, 103)
	seenW, _ := runWitnessed(t, seen, w)
	waitFor(t, "W cosigns the history it is shown", func() bool { return cosignedBy(t, seenW, w, 2) })
	otherW, _ := runWitnessed(t, other, w)
	waitFor(t, "W refuses the other history", func() bool {
		st := otherW.Status(ctx)[0]
		return st.State == CosignFailing && strings.Contains(st.LastError, ErrWitnessProof.Error())
	})
	if cosignedBy(t, otherW, w, 3) {
		t.Fatal("the other history got cosigned")
	}

	fetchOther, fetchSeen := serve(t, otherW), serve(t, seenW)
	follow := func(fetch Fetcher, quorum int) (*Follower, *int) {
		n := 0
		f, err := NewFollower(FollowConfig{Fetcher: fetch, Key: verifierOf(t, lid), Origin: "nodeL/hanzo",
			Witnesses: []note.Verifier{w.verifier(t)}, Quorum: quorum, Accept: func(context.Context, int64, Record) error { n++; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		return f, &n
	}
	f, took := follow(fetchOther, 1)
	for range 3 {
		if _, err := f.Sync(ctx); !errors.Is(err, ErrUnwitnessed) {
			t.Fatalf("the other history with a quorum: %v; want ErrUnwitnessed", err)
		}
	}
	if *took != 0 || f.State().Checkpoint != nil {
		t.Errorf("took %d records of the history the witness never saw", *took)
	}
	// Without the quorum, the split view works: the control.
	f0, took0 := follow(fetchOther, 0)
	if _, err := f0.Sync(ctx); err != nil || *took0 != 3 {
		t.Errorf("without a quorum: %v, took %d; want the other history's 3", err, *took0)
	}
	// The witnessed history is accepted, and then the other is a fork.
	g, tookG := follow(fetchSeen, 1)
	if _, err := g.Sync(ctx); err != nil || *tookG != 2 {
		t.Fatalf("the witnessed history: %v, took %d; want 2", err, *tookG)
	}
	g.cfg.Fetcher = fetchOther
	if _, err := g.Sync(ctx); !errors.Is(err, ErrForked) || g.Fork() == nil {
		t.Errorf("the other history after the witnessed one: %v; want ErrForked with evidence", err)
	}
}

// In a syncer, a log waiting for its witnesses is in state unwitnessed,
// with its newest size and the cosignatures it has: not a failure, not a
// refusal held against it, warned of once; it is taken in once
// cosigned. A log's own key is no witness of it, even when listed.
func TestSyncerWaitsForWitnesses(t *testing.T) {
	dir := t.TempDir()
	a := testIdentity(t, "nodeA")
	w := startWitness(t, "nodeW", dir, a)
	l := openTestLog(t, a, filepath.Join(dir, "a.db"))
	appendN(t, l, a, 0, 3)
	sw := &swappable{src: l}
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var admitted countAdmit
	s, _ := runSyncer(t, SyncConfig{Network: "hanzo", Peers: []Peer{{URL: serve(t, sw).Base, Key: a.VerifierKey, Trusted: true}},
		Interval: 5 * time.Millisecond, Dir: dir, State: openTestState(t, dir), Admit: admitted.admit, Logger: logger,
		Witnesses: []string{w.id.VerifierKey, a.VerifierKey}, WitnessQuorum: 1})
	waitFor(t, "many syncs waiting", func() bool { ls := s.Logs()[0]; return ls.State == PeerUnwitnessed && ls.BytesFetched > 3000 })
	ls := s.Logs()[0]
	if ls.Failures != 0 || len(ls.Rejected) != 0 || ls.Size != 0 || admitted.count() != 0 ||
		ls.Unwitnessed == nil || *ls.Unwitnessed != (Unwitnessed{Size: 3, Cosigned: 0, Quorum: 1}) || !strings.Contains(ls.LastError, "witnesses") {
		t.Errorf("waiting log %+v (unwitnessed %+v); want no failure, no refusal, nothing taken, size 3 waiting", ls, ls.Unwitnessed)
	}
	mu.Lock()
	warned := strings.Count(logs.String(), "lacks the witness quorum")
	mu.Unlock()
	if warned != 1 {
		t.Errorf("warned %d times; want once:\n%s", warned, logs.String())
	}

	// A's cosignature of its own checkpoint, though its key is listed.
	msg, _ := l.Checkpoint(context.Background())
	sw.set(fixedCheckpoint{l, append(msg, cosignatureLine(t, a.Cosigner, verifierOf(t, a), msg, false)...)})
	fetched := s.Logs()[0].BytesFetched
	waitFor(t, "syncs of the self-cosigned checkpoint", func() bool { return s.Logs()[0].BytesFetched > fetched+3000 })
	if ls := s.Logs()[0]; ls.State != PeerUnwitnessed || *ls.Unwitnessed != (Unwitnessed{Size: 3, Cosigned: 0, Quorum: 1}) || admitted.count() != 0 {
		t.Errorf("a log cosigned by itself: %+v (unwitnessed %+v); want still waiting, no cosignature counted", ls, ls.Unwitnessed)
	}

	wl, _ := runWitnessed(t, l, w)
	sw.set(wl)
	waitFor(t, "the cosigned log taken in", func() bool { return admitted.count() == 3 && s.Logs()[0].State == PeerOK })
	if ls := s.Logs()[0]; ls.Unwitnessed != nil || ls.Size != 3 {
		t.Errorf("cosigned log %+v; want ok at 3", ls)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A witness key is a cosignature/v1 key (type 0x04) or a node's verifier
// key, the same verifier; a log's own key is dropped from its witnesses.
func TestWitnessVerifiers(t *testing.T) {
	a, w := testIdentity(t, "nodeA"), testIdentity(t, "nodeW")
	vs, err := WitnessVerifiers([]string{w.VerifierKey, w.WitnessKey, a.VerifierKey})
	if err != nil || len(vs) != 2 {
		t.Fatalf("WitnessVerifiers = %d verifiers, %v; want 2 (W's two keys are one)", len(vs), err)
	}
	if rest := withoutLog(vs, a.VerifierKey); len(rest) != 1 || rest[0].Name() != "nodeW" {
		t.Errorf("without A's own key: %v", rest)
	}
	if _, err := WitnessVerifiers([]string{"nodeW+1234+AAAA"}); err == nil {
		t.Error("a malformed key accepted")
	}
	if !strings.HasPrefix(w.WitnessKey, "nodeW+") || w.WitnessKey == w.VerifierKey {
		t.Errorf("witness key %q; want nodeW's, another hash than %q", w.WitnessKey, w.VerifierKey)
	}
	// A key file loaded has the same cosigner.
	file := filepath.Join(t.TempDir(), "node.key")
	made, err := GenerateKey(file, "nodeK")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadKey(file)
	if err != nil || loaded.Cosigner == nil || loaded.WitnessKey != made.WitnessKey {
		t.Fatalf("LoadKey = %+v, %v; want the cosigner of %q", loaded, err, made.WitnessKey)
	}
	signed, err := note.Sign(&note.Note{Text: "nodeA/hanzo\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"}, loaded.Cosigner)
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := WitnessVerifiers([]string{made.WitnessKey})
	if _, err := note.Open(signed, note.VerifierList(kv[0])); err != nil {
		t.Errorf("the loaded cosigner's signature does not verify with the witness key: %v", err)
	}
}
