package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memLog is a log kept in memory that takes any entry, signed by anyone:
// what a dishonest or broken node could serve.
type memLog struct {
	signer note.Signer
	origin string

	mu      sync.Mutex // protects the fields below
	entries [][]byte
	hashes  []tlog.Hash
}

func (m *memLog) add(t testing.TB, es ...[]byte) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		hs, err := tlog.StoredHashes(int64(len(m.entries)), e, tlog.HashReaderFunc(m.readHashes))
		if err != nil {
			t.Fatal(err)
		}
		m.hashes = append(m.hashes, hs...)
		m.entries = append(m.entries, e)
	}
}

func (m *memLog) readHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, ErrNotFound
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) Checkpoint(ctx context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := int64(len(m.entries))
	h, err := tlog.TreeHash(n, tlog.HashReaderFunc(m.readHashes))
	if err != nil {
		return nil, err
	}
	return SignCheckpoint(m.signer, Checkpoint{Origin: m.origin, Size: n, Hash: h})
}

func (m *memLog) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !tileInTree(t, int64(len(m.entries))) {
		return nil, ErrNotFound
	}
	if t.L != EntriesLevel {
		return tlog.ReadTileData(t, tlog.HashReaderFunc(m.readHashes))
	}
	var out []byte
	for _, e := range m.entries[t.N*tileWidth : t.N*tileWidth+int64(t.W)] {
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out, nil
}

// swappable serves one TileSource, then another: a peer that changes
// what it serves.
type swappable struct {
	mu  sync.Mutex
	src TileSource
}

func (s *swappable) set(src TileSource) { s.mu.Lock(); s.src = src; s.mu.Unlock() }
func (s *swappable) get() TileSource    { s.mu.Lock(); defer s.mu.Unlock(); return s.src }
func (s *swappable) Checkpoint(ctx context.Context) ([]byte, error) {
	return s.get().Checkpoint(ctx)
}
func (s *swappable) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	return s.get().ReadTile(ctx, t)
}

// tamperEntries flips a byte of every entry bundle it serves.
type tamperEntries struct{ TileSource }

func (s tamperEntries) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	b, err := s.TileSource.ReadTile(ctx, t)
	if err == nil && t.L == EntriesLevel && len(b) > 20 {
		b = append([]byte(nil), b...)
		b[20] ^= 1
	}
	return b, err
}

// collector records what a follower accepts.
type collector struct {
	indexes []int64
	texts   []string
	fail    error // returned once, then cleared
}

func (c *collector) accept(ctx context.Context, i int64, r Record) error {
	if err := c.fail; err != nil {
		c.fail = nil
		return err
	}
	c.indexes = append(c.indexes, i)
	c.texts = append(c.texts, r.Experience.Text)
	return nil
}

func newTestFollower(t *testing.T, src TileSource, key note.Verifier, origin string, c *collector, max int) *Follower {
	t.Helper()
	f, err := NewFollower(FollowConfig{Fetcher: serve(t, src), Key: key, Origin: origin, Accept: c.accept, MaxEntries: max, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFollowerFollowsAGrowingLog(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeA")
	l := openTestLog(t, id, filepath.Join(t.TempDir(), "log.db"))
	var c collector
	f := newTestFollower(t, l, verifierOf(t, id), l.Origin(), &c, 256)
	if res, err := f.Sync(ctx); err != nil || res.Accepted != 0 || res.Size != 0 {
		t.Fatalf("empty log: %+v, %v", res, err)
	}
	appendN(t, l, id, 0, 600)
	var syncs int
	for more := true; more; syncs++ {
		res, err := f.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted > 256 {
			t.Fatalf("accepted %d in one sync; MaxEntries is 256", res.Accepted)
		}
		more = res.More
	}
	if syncs != 3 {
		t.Errorf("%d syncs for 600 entries at 256 a time; want 3", syncs)
	}
	appendN(t, l, id, 600, 610)
	if res, err := f.Sync(ctx); err != nil || res.Accepted != 10 {
		t.Fatalf("after 10 more: %+v, %v", res, err)
	}
	if len(c.indexes) != 610 {
		t.Fatalf("accepted %d records; want 610", len(c.indexes))
	}
	for i, x := range c.indexes {
		if x != int64(i) || c.texts[i] != fmt.Sprintf("Lesson %d: check errors.", i) {
			t.Fatalf("record %d: index %d, text %q", i, x, c.texts[i])
		}
	}
	// A follower resumed from the state takes only what is new.
	st := f.State()
	appendN(t, l, id, 610, 612)
	var c2 collector
	f2, err := NewFollower(FollowConfig{Fetcher: serve(t, l), Key: verifierOf(t, id), Origin: l.Origin(), Accept: c2.accept, State: st})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f2.Sync(ctx); err != nil || res.Accepted != 2 || c2.indexes[0] != 610 {
		t.Fatalf("resumed: %+v, %v, %v", res, err, c2.indexes)
	}
	// Fetching only new entries: the second follower read far less (the
	// last, partial bundle and its hash tiles, not the 600 before them).
	if f2.BytesFetched() >= f.BytesFetched()/4 {
		t.Errorf("resumed follower fetched %d bytes; the first %d", f2.BytesFetched(), f.BytesFetched())
	}
}

func TestFollowerCatchesAFork(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeA")
	key := verifierOf(t, id)
	dir := t.TempDir()
	honest := openTestLog(t, id, filepath.Join(dir, "a.db"))
	appendN(t, honest, id, 0, 5)
	peer := &swappable{src: honest}
	var c collector
	f := newTestFollower(t, peer, key, honest.Origin(), &c, 0)
	if _, err := f.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The node restarts with the same key and an empty log: not believed.
	empty := openTestLog(t, id, filepath.Join(dir, "b.db"))
	peer.set(empty)
	if _, err := f.Sync(ctx); !errors.Is(err, ErrStale) {
		t.Errorf("sync with a log emptied under the same key: %v; want ErrStale", err)
	}
	if st := f.State(); st.Next != 5 {
		t.Errorf("next %d after the empty log; want 5", st.Next)
	}
	// It grows another history past the accepted size: a fork, caught.
	appendN(t, empty, id, 100, 108)
	_, err := f.Sync(ctx)
	if !errors.Is(err, ErrForked) {
		t.Fatalf("rewritten history: %v; want ErrForked", err)
	}
	fork := f.Fork()
	if fork == nil {
		t.Fatal("no fork evidence kept")
	}
	// Both pieces of evidence are signed by the key.
	a, errA := OpenCheckpoint(fork.Old, key, honest.Origin())
	b, errB := OpenCheckpoint(fork.New, key, honest.Origin())
	if errA != nil || errB != nil || a.Size != 5 || b.Size != 8 {
		t.Errorf("evidence: %+v %v, %+v %v", a, errA, b, errB)
	}
	// The log is no longer taken, even if it goes back to the honest one.
	peer.set(honest)
	if _, err := f.Sync(ctx); !errors.Is(err, ErrForked) {
		t.Errorf("after the fork: %v; want ErrForked", err)
	}
	if len(c.indexes) != 5 {
		t.Errorf("accepted %d records; want the 5 honest ones", len(c.indexes))
	}
}

func TestFollowerRejects(t *testing.T) {
	ctx := context.Background()
	id, other := testIdentity(t, "nodeA"), testIdentity(t, "nodeB")
	key := verifierOf(t, id)
	m := &memLog{signer: id.Signer, origin: "nodeA/hanzo"}
	good := experienceRecord(t, id, 0)
	forged := append([]byte(nil), experienceRecord(t, id, 1)...)
	forged[len(forged)-1] ^= 1
	m.add(t, good, forged, experienceRecord(t, other, 2), []byte("junk"), experienceRecord(t, id, 4))
	var c collector
	f := newTestFollower(t, m, key, "nodeA/hanzo", &c, 0)
	res, err := f.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 2 || res.Rejected != 3 {
		t.Errorf("accepted %d, rejected %d; want 2 and 3", res.Accepted, res.Rejected)
	}
	want := map[string]int64{RejectBadSignature: 1, RejectUnknownAuthor: 1, RejectMalformed: 1}
	if got := f.State().Rejected; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rejected %v; want %v", got, want)
	}

	// A checkpoint signed by another key is refused, and nothing taken.
	var c2 collector
	f2 := newTestFollower(t, m, verifierOf(t, other), "", &c2, 0)
	if _, err := f2.Sync(ctx); !errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("another key: %v; want ErrCheckpointSignature", err)
	}
	// Entry bundles that are not the signed entries are refused.
	var c3 collector
	f3 := newTestFollower(t, tamperEntries{m}, key, "", &c3, 0)
	if _, err := f3.Sync(ctx); !errors.Is(err, ErrBadEntry) {
		t.Errorf("tampered bundle: %v; want ErrBadEntry", err)
	}
	if len(c2.indexes)+len(c3.indexes) != 0 {
		t.Errorf("accepted records from a bad peer")
	}
	// An Accept error stops the sync; the record is offered again.
	var c4 collector
	c4.fail = errors.New("store full")
	f4 := newTestFollower(t, m, key, "", &c4, 0)
	if _, err := f4.Sync(ctx); err == nil {
		t.Error("Accept error not returned")
	}
	if res, err := f4.Sync(ctx); err != nil || res.Accepted != 2 || c4.indexes[0] != 0 {
		t.Errorf("after an Accept error: %+v, %v, %v", res, err, c4.indexes)
	}
}
