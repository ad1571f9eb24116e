package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// A log travels through a mirror: C follows A's log as B mirrors it, with
// A's key, and never talks to A.
func TestMirrorServesTheLogOnward(t *testing.T) {
	ctx := context.Background()
	a := testIdentity(t, "nodeA")
	keyA := verifierOf(t, a)
	dir := t.TempDir()
	logA := openTestLog(t, a, filepath.Join(dir, "a.db"))
	appendN(t, logA, a, 0, 300)
	mirror, err := OpenMirror(ctx, MirrorConfig{Path: filepath.Join(dir, "b-mirror-a.db"), Origin: logA.Origin(), Key: a.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mirror.Close() })
	var atB, atC collector
	b, err := NewFollower(FollowConfig{Fetcher: serve(t, logA), Key: keyA, Origin: logA.Origin(), Accept: atB.accept, Mirror: mirror, MaxEntries: 200})
	if err != nil {
		t.Fatal(err)
	}
	viaB := serve(t, mirror)
	c := newTestFollower(t, mirror, keyA, logA.Origin(), &atC, 0)
	// Before B holds anything, its mirror has no checkpoint to offer.
	if _, err := c.Sync(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty mirror: %v; want ErrNotFound", err)
	}
	// B's first sync takes 200 of 300: the mirror holds them but cannot
	// serve a checkpoint A signed for a tree it does not hold.
	if res, err := b.Sync(ctx); err != nil || !res.More {
		t.Fatalf("first sync: %+v, %v", res, err)
	}
	if mirror.Held() != 200 {
		t.Errorf("mirror holds %d; want 200", mirror.Held())
	}
	if _, err := c.Sync(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("half-filled mirror: %v; want ErrNotFound", err)
	}
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Sync(ctx); err != nil || res.Accepted != 300 {
		t.Fatalf("C through the mirror: %+v, %v", res, err)
	}
	// Proofs through the mirror check out against A's signature.
	cp, _, err := FetchCheckpoint(ctx, viaB, keyA, logA.Origin())
	if err != nil {
		t.Fatal(err)
	}
	if err := ProveInclusion(ctx, viaB, cp, 299, experienceRecord(t, a, 299)); err != nil {
		t.Error(err)
	}
	// A grows; the records reach C through B.
	appendN(t, logA, a, 300, 310)
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Sync(ctx); err != nil || res.Accepted != 10 {
		t.Fatalf("C after A grew: %+v, %v", res, err)
	}
	if len(atB.texts) != 310 || len(atC.texts) != 310 || atC.texts[309] != atB.texts[309] {
		t.Errorf("B has %d, C has %d", len(atB.texts), len(atC.texts))
	}
	// The mirror reopens where it was.
	mirror.Close()
	again, err := OpenMirror(ctx, MirrorConfig{Path: filepath.Join(dir, "b-mirror-a.db"), Origin: logA.Origin(), Key: a.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Held() != 310 || again.Size() != 310 {
		t.Errorf("reopened mirror holds %d, serves %d; want 310", again.Held(), again.Size())
	}
}

func TestMirrorRejects(t *testing.T) {
	ctx := context.Background()
	a, other := testIdentity(t, "nodeA"), testIdentity(t, "nodeA")
	dir := t.TempDir()
	logA := openTestLog(t, a, filepath.Join(dir, "a.db"))
	recs := appendN(t, logA, a, 0, 3)
	msg, _ := logA.Checkpoint(ctx)
	m, err := OpenMirror(ctx, MirrorConfig{Path: filepath.Join(dir, "m.db"), Origin: logA.Origin(), Key: a.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Entries that are not the signed tree's are not served.
	forged := [][]byte{recs[0], experienceRecord(t, a, 7), recs[2]}
	if err := m.Add(ctx, msg, 0, forged); !errors.Is(err, ErrBadEntry) {
		t.Errorf("forged entries: %v; want ErrBadEntry", err)
	}
	if m.Held() != 0 {
		t.Errorf("mirror kept %d entries of a failed add", m.Held())
	}
	// A checkpoint by another key is refused.
	otherLog := openTestLog(t, other, filepath.Join(dir, "o.db"))
	appendN(t, otherLog, other, 0, 3)
	otherMsg, _ := otherLog.Checkpoint(ctx)
	if err := m.Add(ctx, otherMsg, 0, recs); !errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("another key's checkpoint: %v; want ErrCheckpointSignature", err)
	}
	// A gap is refused; the real entries are taken, and again is a no-op.
	if err := m.Add(ctx, msg, 1, recs[1:]); err == nil {
		t.Error("entries after a gap taken")
	}
	if err := m.Add(ctx, msg, 0, recs); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, msg, 0, recs); err != nil || m.Held() != 3 || m.Size() != 3 {
		t.Errorf("add again: %v, held %d, size %d", err, m.Held(), m.Size())
	}
	// A file of one kind does not open as the other.
	if _, err := OpenLog(ctx, LogConfig{Path: filepath.Join(dir, "m.db"), Origin: logA.Origin(), Identity: a}); !errors.Is(err, ErrWrongLog) {
		t.Errorf("mirror opened as a log: %v; want ErrWrongLog", err)
	}
}

// mirrorAt is the URL of host's mirror of the log by key v: its key's
// name and hash, "name+hash", as a path segment.
func mirrorAt(host string, v note.Verifier) string {
	return fmt.Sprintf("%s/log/hanzo/mirror/%s+%08x", host, url.PathEscape(v.Name()), v.KeyHash())
}

// testNode is a node as dso serve runs one: its own log under
// /log/hanzo/ and its syncer's mirrors under /log/hanzo/mirror/, on
// loopback.
type testNode struct {
	url    string
	syncer *Syncer
	admit  *recordingAdmit
}

func startTestNode(t *testing.T, dir string, own *Log, peers ...Peer) testNode {
	t.Helper()
	st := openTestState(t, dir)
	rec := &recordingAdmit{trusted: map[string]int{}, other: map[string]int{}}
	s, _ := runSyncer(t, SyncConfig{Network: "hanzo", Interval: 10 * time.Millisecond, Dir: dir, State: st, Admit: rec.admit, Peers: peers})
	mux := http.NewServeMux()
	mux.Handle("/log/hanzo/mirror/", http.StripPrefix("/log/hanzo/mirror", s.MirrorHandler(nil)))
	mux.Handle("/log/hanzo/", http.StripPrefix("/log/hanzo", NewHandler(own, nil)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return testNode{url: srv.URL, syncer: s, admit: rec}
}

// logOf is the status of the log by key v that n follows.
func (n testNode) logOf(v note.Verifier) LogStatus {
	for _, ls := range n.syncer.Logs() {
		if lv, err := note.NewVerifier(ls.Key); err == nil && keyAuthorID(lv) == keyAuthorID(v) {
			return ls
		}
	}
	return LogStatus{}
}

// Issue 25: a node mirrors two logs whose keys share a name apart, each
// at its key's name and hash; a node down the line follows the one its
// peer vouches for there, and the other cannot shadow it. The mirror by
// name alone answers only while the name is one key's.
func TestMirrorsOfKeysThatShareAName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idA, idM, idB, idC, idD := testIdentity(t, "nodeA"), testIdentity(t, "nodeA"), testIdentity(t, "nodeB"),
		testIdentity(t, "node/C"), testIdentity(t, "nodeD")
	vA, vM, vC := verifierOf(t, idA), verifierOf(t, idM), verifierOf(t, idC)
	logA := openTestLog(t, idA, filepath.Join(dir, "a.db"))
	logM := openTestLog(t, idM, filepath.Join(dir, "m.db"))
	logC := openTestLog(t, idC, filepath.Join(dir, "c.db"))
	logB := openTestLog(t, idB, filepath.Join(dir, "b.db"))
	appendN(t, logA, idA, 0, 3)
	appendN(t, logM, idM, 10, 12)
	appendN(t, logC, idC, 20, 21)
	if _, err := logB.Vouch(ctx, "hanzo", []string{idA.VerifierKey}, t0); err != nil {
		t.Fatal(err)
	}
	// B follows the key merely named nodeA first.
	b := startTestNode(t, filepath.Join(dir, "B"), logB,
		Peer{URL: serve(t, logM).Base, Key: idM.VerifierKey}, Peer{URL: serve(t, logA).Base, Key: idA.VerifierKey, Trusted: true},
		Peer{URL: serve(t, logC).Base, Key: idC.VerifierKey, Trusted: true})
	d := startTestNode(t, filepath.Join(dir, "D"), openTestLog(t, idD, filepath.Join(dir, "d.db")),
		Peer{URL: b.url, Key: idB.VerifierKey, Trusted: true})
	for _, tt := range []struct {
		url  string
		key  note.Verifier
		size int64
	}{{mirrorAt(b.url, vA), vA, 3}, {mirrorAt(b.url, vM), vM, 2}, {mirrorAt(b.url, vC), vC, 1},
		{b.url + "/log/hanzo/mirror/node%2FC", vC, 1}} { // a name with a '/', by name alone
		var c Checkpoint
		var err error
		waitFor(t, "B serves "+tt.url, func() bool {
			c, _, err = FetchCheckpoint(ctx, HTTPFetcher{Base: tt.url}, tt.key, "")
			return err == nil && c.Size == tt.size || err != nil && !errors.Is(err, ErrNotFound)
		})
		if err != nil || c.Size != tt.size {
			t.Errorf("%s: size %d, %v; want the log of %s+%08x, %d records", tt.url, c.Size, err, tt.key.Name(), tt.key.KeyHash(), tt.size)
		}
	}
	// Two keys are named nodeA: the name alone says neither.
	resp, err := http.Get(b.url + "/log/hanzo/mirror/nodeA/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMultipleChoices || !strings.Contains(string(body), mirrorAt("", vA)[len("/log/hanzo"):]) {
		t.Errorf("mirror by the shared name: %s %q; want 300, naming each mirror", resp.Status, body)
	}

	waitFor(t, "D admits nodeA's records through B's mirror", func() bool { n, _ := d.admit.counts("nodeA"); return n == 3 })
	if ls := d.logOf(vA); ls.URL != mirrorAt(b.url, vA) || ls.State != PeerOK || len(ls.Rejected) != 0 {
		t.Errorf("D's log of nodeA: %+v; want followed at B's mirror of its key, nothing refused", ls)
	}
	if n := len(d.syncer.Logs()); n != 2 {
		t.Errorf("D follows %d logs; want B and nodeA", n)
	}
}

// Issue 25: a node checks a log against the other mirrors of its key,
// not of its name: a key merely named like it at the other host cannot
// hide a split view.
func TestCrossCheckFindsTheMirrorOfTheKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idH1, idH2, idK, idX, idD := testIdentity(t, "nodeH1"), testIdentity(t, "nodeH2"), testIdentity(t, "nodeK"),
		testIdentity(t, "nodeK"), testIdentity(t, "nodeD")
	logH1 := openTestLog(t, idH1, filepath.Join(dir, "h1.db"))
	logH2 := openTestLog(t, idH2, filepath.Join(dir, "h2.db"))
	k1 := openTestLog(t, idK, filepath.Join(dir, "k1.db"))
	k2 := openTestLog(t, idK, filepath.Join(dir, "k2.db"))
	logX := openTestLog(t, idX, filepath.Join(dir, "x.db"))
	appendN(t, k1, idK, 0, 3)
	appendN(t, k2, idK, 10, 13)
	appendN(t, logX, idX, 20, 23)
	for _, l := range []*Log{logH1, logH2} {
		if _, err := l.Vouch(ctx, "hanzo", []string{idK.VerifierKey}, t0); err != nil {
			t.Fatal(err)
		}
	}
	// nodeK shows one history to H1 and another to H2, which both also
	// follow, first, a key merely named nodeK.
	x := Peer{URL: serve(t, logX).Base, Key: idX.VerifierKey}
	h1 := startTestNode(t, filepath.Join(dir, "H1"), logH1, x, Peer{URL: serve(t, k1).Base, Key: idK.VerifierKey, Trusted: true})
	h2 := startTestNode(t, filepath.Join(dir, "H2"), logH2, x, Peer{URL: serve(t, k2).Base, Key: idK.VerifierKey, Trusted: true})
	vK := verifierOf(t, idK)
	for _, h := range []testNode{h1, h2} {
		waitFor(t, "the hosts mirror nodeK", func() bool { return h.logOf(vK).Mirrored == 3 })
	}
	d := startTestNode(t, filepath.Join(dir, "D"), openTestLog(t, idD, filepath.Join(dir, "d.db")),
		Peer{URL: h1.url, Key: idH1.VerifierKey, Trusted: true}, Peer{URL: h2.url, Key: idH2.VerifierKey, Trusted: true})
	waitFor(t, "D catches nodeK's split view", func() bool { return d.logOf(vK).State == PeerForked })
	if ls := d.logOf(vK); ls.Fork == nil || ls.Rejected[RejectBadCheckpoint] != 0 {
		t.Errorf("D's log of nodeK: %+v; want forked with evidence, no checkpoint refused", ls)
	}
}
