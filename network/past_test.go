package network

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// A node restarted with the same key on an empty log, which then signs a
// smaller tree of other records, no longer serves the tiles of its signed
// past: the follower proves the fork from its mirror, keeps both
// checkpoints, and stops following.
func TestSyncCatchesASmallerOtherTree(t *testing.T) {
	dir := t.TempDir()
	id := testIdentity(t, "nodeA")
	first := openTestLog(t, id, filepath.Join(dir, "a1.db"))
	appendN(t, first, id, 0, 3)
	accepted, err := first.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sw := &swappable{src: first}
	peer := Peer{URL: serve(t, sw).Base, Key: id.VerifierKey, Trusted: true}
	st := openTestState(t, dir)
	var admitted countAdmit
	s, _ := startSyncer(t, st, dir, peer, &admitted)
	waitFor(t, "three records admitted and mirrored", func() bool { return s.Logs()[0].Mirrored == 3 && admitted.count() == 3 })

	other := openTestLog(t, id, filepath.Join(dir, "a2.db"))
	appendN(t, other, id, 10, 11)
	shown, err := other.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sw.set(other)
	waitFor(t, "the fork caught", func() bool { return s.Logs()[0].State == PeerForked })
	ls := s.Logs()[0]
	if ls.Fork == nil || ls.Fork.Old != string(accepted) || ls.Fork.New != string(shown) {
		t.Errorf("fork evidence %+v; want the accepted checkpoint and the smaller one shown", ls.Fork)
	}
	if ls.Size != 3 || admitted.count() != 3 {
		t.Errorf("after the fork: size %d, %d admitted; want the signed past, 3", ls.Size, admitted.count())
	}
	if _, f, err := st.Follow(context.Background(), id.VerifierKey); err != nil || f == nil || !bytes.Equal(f.New, shown) {
		t.Errorf("stored fork %+v, %v; want the evidence kept", f, err)
	}
}

// An entry over MaxRecordLen is refused as too large, not as malformed.
func TestFollowerRejectsTooLarge(t *testing.T) {
	id := testIdentity(t, "nodeA")
	m := &memLog{signer: id.Signer, origin: "nodeA/hanzo"}
	big := append([]byte{recordVersion, byte(KindExperience)}, make([]byte, MaxRecordLen)...)
	m.add(t, experienceRecord(t, id, 0), big)
	var c collector
	f := newTestFollower(t, m, verifierOf(t, id), "nodeA/hanzo", &c, 0)
	if _, err := f.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.State().Rejected; got[RejectTooLarge] != 1 || len(c.indexes) != 1 {
		t.Errorf("rejected %v, accepted %d; want one too large, one accepted", got, len(c.indexes))
	}
}
