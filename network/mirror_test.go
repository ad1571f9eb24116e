package network

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
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
