package library

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/store"
)

// The index snapshot
//
// Reading every stored experience to fill the index takes seconds per
// hundred thousand. A library whose Config.Snapshot names a file keeps its
// index there between runs instead: Close writes the index of the space it
// serves, with the change log position it is up to date with (the cursor)
// and the experience id and time of the change logged at the cursor. New
// loads the file when it is of the configured space and the store vouches
// for it, then applies only the changes logged after the cursor, as Follow
// would.
//
// The store vouches for a snapshot when its log holds, at the cursor, the
// very change the snapshot recorded (another store's log, or a restored
// copy of this one that went another way, holds another there, or none),
// holds every change after the cursor (none was pruned), and when, once
// they are applied, the index holds as many codes of the space as the store
// does. Anything else (no file, a damaged one, another space, a cursor
// ahead of the store) is said once in the log and the index is read from
// the store as it would be without a snapshot. A snapshot is never needed:
// deleting it costs the next start the full read, nothing more.

// SnapshotFile is the snapshot's name in a data directory, beside the
// store's file (store.FileName).
const SnapshotFile = "dso.index"

// Snapshot file format, integers little-endian:
//
//	magic    8 bytes "DSOLIBIX"
//	version  uint32  1
//	length   uint32  of the header
//	header   JSON, a snapshotHeader
//	crc      uint32  CRC-32 (IEEE) of every byte before it
//	index    a gpuidx snapshot (see gpuidx.CPU.Save), with its own checksum
const (
	snapshotMagic     = "DSOLIBIX"
	snapshotVersion   = 1
	maxSnapshotHeader = 1 << 16
)

// snapshotHeader says what a snapshot's index is and where the change log
// stood when it was written.
type snapshotHeader struct {
	// Space is the embedding space of the index's codes.
	Space string `json:"space"`
	// Cursor is the change log seq the index is up to date with: every
	// change up to it is applied.
	Cursor int64 `json:"cursor"`
	// Change and ChangeAt are the experience id and the time (Unix
	// nanoseconds) of the change logged at Cursor.
	Change   string `json:"change"`
	ChangeAt int64  `json:"change_at"`
	// Records is the number of records in the index.
	Records int       `json:"records"`
	Written time.Time `json:"written"`
}

// SpaceCounter is a store that counts the codes of each space without
// reading every record (store.SQLite does). New uses it, where it can,
// to choose the space it serves.
type SpaceCounter interface {
	// CountSpaces returns how many experiences have a code in each space,
	// and under "" how many have none.
	CountSpaces(ctx context.Context) (map[string]int, error)
}

// ChangeFinder is a change log that can say what it logged at a seq
// (store.SQLite can). A snapshot is used only over a store that is both
// a ChangeFinder and a SpaceCounter.
type ChangeFinder interface {
	// ChangeAt returns the change logged at seq, or an error wrapping
	// store.ErrNotFound when the log no longer holds it.
	ChangeAt(ctx context.Context, seq int64) (store.Change, error)
}

// snapshotStore is what vouching for a snapshot takes of a store.
type snapshotStore interface {
	ChangeLog
	ChangeFinder
	SpaceCounter
}

// errNoSnapshot marks the reasons a snapshot is not used.
var errNoSnapshot = errors.New("library: index snapshot not used")

// restore fills st's index, which is empty, from the snapshot and the
// changes logged after it. It reports false, having said why in the log,
// when there is no snapshot the store vouches for: st's index is empty
// then, to be read from the store. counts are the store's (see
// SpaceCounter), taken after its log stood at from. st is served.
func (l *Library) restore(ctx context.Context, st *state, counts map[string]int, from int64) (bool, error) {
	path := l.cfg.Snapshot
	ss, ok := l.store.(snapshotStore)
	if path == "" || !ok || st.idx.Len() != 0 {
		return false, nil
	}
	start := time.Now()
	replayed, err := l.restoreFrom(ctx, ss, st, counts, from)
	switch {
	case errors.Is(err, errNoSnapshot):
		reason := strings.TrimPrefix(err.Error(), errNoSnapshot.Error()+": ")
		l.log.Warn("experience library: the index snapshot is not used; reading the index from the store", "snapshot", path, "reason", reason)
		clearIndex(st.idx)
		return false, nil
	case errors.Is(err, fs.ErrNotExist):
		l.log.Info("experience library: no index snapshot; reading the index from the store", "snapshot", path)
		return false, nil
	case err != nil:
		return false, err // the store failed: so would the full read
	}
	l.log.Info("experience library: index loaded from its snapshot", "snapshot", path, "space", st.space.Name,
		"experiences", st.idx.Len(), "changes_applied", replayed, "took", time.Since(start).String())
	return true, nil
}

// restoreFrom is restore's work: an error wrapping errNoSnapshot or
// fs.ErrNotExist says why the snapshot is not used, any other is the
// store's. It returns how many changed experiences it applied.
func (l *Library) restoreFrom(ctx context.Context, ss snapshotStore, st *state, counts map[string]int, from int64) (int, error) {
	f, err := os.Open(l.cfg.Snapshot)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %w", errNoSnapshot, err)
	}
	defer f.Close()
	h, err := readSnapshotHeader(f)
	if err != nil {
		return 0, err
	}
	if err := vouch(ctx, ss, h, st.space.Name, from); err != nil {
		return 0, err
	}
	if err := st.idx.Restore(f); err != nil {
		return 0, fmt.Errorf("%w: %w", errNoSnapshot, err)
	}
	if n := st.idx.Len(); n != h.Records {
		return 0, fmt.Errorf("%w: the header says %d records, the index holds %d", errNoSnapshot, h.Records, n)
	}
	replayed, moved, err := l.replay(ctx, h.Cursor, from)
	if err != nil {
		return 0, err
	}
	// Changes logged after from may have come after counts were taken:
	// each such experience may have moved the count by one.
	if n, want := st.idx.Len(), counts[st.space.Name]; n < want-moved || n > want+moved {
		return 0, fmt.Errorf("%w: the index holds %d codes of %s, the store %d", errNoSnapshot, n, st.space.Name, want)
	}
	return replayed, nil
}

// vouch checks that the store's change log is the one the snapshot h of
// space was taken from, and holds every change since; from is where the
// log stands.
func vouch(ctx context.Context, ss snapshotStore, h snapshotHeader, space string, from int64) error {
	switch {
	case h.Space != space:
		return fmt.Errorf("%w: it is of space %s, the library's is %s", errNoSnapshot, h.Space, space)
	case h.Cursor <= 0:
		return fmt.Errorf("%w: it names no change log position", errNoSnapshot)
	case h.Cursor > from:
		return fmt.Errorf("%w: it was taken at change %d, the store's log ends at %d (another store, or one restored from a copy)",
			errNoSnapshot, h.Cursor, from)
	}
	c, err := ss.ChangeAt(ctx, h.Cursor)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: the store's change log no longer holds change %d", errNoSnapshot, h.Cursor)
	}
	if err != nil {
		return err
	}
	if c.ID != h.Change || c.At.UnixNano() != h.ChangeAt {
		return fmt.Errorf("%w: the store logged another change at %d (another store, or one restored from a copy)", errNoSnapshot, h.Cursor)
	}
	if _, _, err := ss.Changes(ctx, h.Cursor, 1); errors.Is(err, store.ErrChangesPruned) {
		return fmt.Errorf("%w: the changes since it were pruned from the store's log", errNoSnapshot)
	} else if err != nil {
		return err
	}
	return nil
}

// applyLogged applies the changes logged after cursor to the index, as
// Follow does, until the log has no more. It returns the seq it ended at,
// how many experiences it applied, and how many of those in pages that
// reach past from. A record that cannot be indexed stops it, with an
// error wrapping errUnindexable.
func (l *Library) applyLogged(ctx context.Context, cursor, from int64) (last int64, applied, after int, err error) {
	for {
		ids, next, err := l.store.Changes(ctx, cursor, followBatch)
		if err != nil || len(ids) == 0 {
			return cursor, applied, after, err
		}
		if err := l.sync(ctx, ids); err != nil {
			return cursor, applied, after, err
		}
		applied += len(ids)
		if next > from {
			after += len(ids) // some may be older; the bound holds all the same
		}
		cursor = next
	}
}

// replay is applyLogged after the snapshot's cursor, which leaves Follow's
// position where the log ends.
func (l *Library) replay(ctx context.Context, cursor, from int64) (applied, after int, err error) {
	last, applied, after, err := l.applyLogged(ctx, cursor, from)
	switch {
	case errors.Is(err, store.ErrChangesPruned):
		return 0, 0, fmt.Errorf("%w: the changes since it were pruned from the store's log", errNoSnapshot)
	case errors.Is(err, errUnindexable):
		return 0, 0, fmt.Errorf("%w: %w", errNoSnapshot, err) // the full read reports it
	case err != nil:
		return 0, 0, fmt.Errorf("library: applying the changes since the index snapshot: %w", err)
	}
	l.follow.seq = last
	return applied, after, nil
}

// readSnapshotHeader reads and checks a snapshot's header, leaving r at
// its index.
func readSnapshotHeader(r io.Reader) (snapshotHeader, error) {
	var h snapshotHeader
	fixed := make([]byte, 16)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return h, fmt.Errorf("%w: reading its header: %w", errNoSnapshot, err)
	}
	if string(fixed[:8]) != snapshotMagic {
		return h, fmt.Errorf("%w: not an index snapshot", errNoSnapshot)
	}
	if v := binary.LittleEndian.Uint32(fixed[8:]); v != snapshotVersion {
		return h, fmt.Errorf("%w: snapshot version %d, this build reads %d", errNoSnapshot, v, snapshotVersion)
	}
	n := binary.LittleEndian.Uint32(fixed[12:])
	if n > maxSnapshotHeader {
		return h, fmt.Errorf("%w: a header of %d bytes", errNoSnapshot, n)
	}
	rest := make([]byte, n+4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return h, fmt.Errorf("%w: reading its header: %w", errNoSnapshot, err)
	}
	sum := crc32.Update(crc32.ChecksumIEEE(fixed), crc32.IEEETable, rest[:n])
	if binary.LittleEndian.Uint32(rest[n:]) != sum {
		return h, fmt.Errorf("%w: its header's checksum does not match", errNoSnapshot)
	}
	if err := json.Unmarshal(rest[:n], &h); err != nil {
		return h, fmt.Errorf("%w: its header: %w", errNoSnapshot, err)
	}
	return h, nil
}

// appendSnapshotHeader appends h in the snapshot's framing to b.
func appendSnapshotHeader(b []byte, h snapshotHeader) ([]byte, error) {
	js, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	start := len(b)
	b = append(b, snapshotMagic...)
	b = binary.LittleEndian.AppendUint32(b, snapshotVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(js)))
	b = append(b, js...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:])), nil
}

// clearIndex empties idx. An index has no method for it: restoring the
// snapshot of an empty index is one.
func clearIndex(idx gpuidx.Index) {
	var empty bytes.Buffer
	if err := gpuidx.NewCPU(gpuidx.CPUConfig{}).Save(&empty); err != nil {
		panic(err) // an empty index always saves
	}
	if err := idx.Restore(&empty); err != nil {
		panic(fmt.Sprintf("library: emptying the index: %v", err))
	}
}

// saveSnapshot writes the snapshot of the index served, when there is one
// to write: Config.Snapshot is set, the store can vouch for it, and the
// library serves its configured space (mid-move, the next start reads the
// store). Writes and Follow's polls wait until it is written.
func (l *Library) saveSnapshot(ctx context.Context) error {
	ss, ok := l.store.(snapshotStore)
	if l.cfg.Snapshot == "" || !ok || !l.servesItsSpace() || l.cfg.Offline {
		return nil
	}
	l.follow.mu.Lock()
	defer l.follow.mu.Unlock()
	// Catch up first, with the changes Follow has not applied (all of
	// them, without Follow: the library's own writes are in the log too),
	// so that the next start has the fewest to apply.
	start := time.Now()
	seq, _, _, err := l.applyLogged(ctx, l.follow.seq, 0)
	if err != nil {
		return fmt.Errorf("library: writing the index snapshot: %w", err)
	}
	l.follow.seq = seq
	if seq == 0 {
		return nil // nothing logged yet: nothing to read either
	}
	// No write through the library lands between the cursor and the index
	// saved (one that came after the cursor is applied again at the next
	// start, harmlessly).
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.servesItsSpace() {
		return nil
	}
	st := l.cur.Load()
	c, err := ss.ChangeAt(ctx, seq)
	if err != nil {
		return fmt.Errorf("library: writing the index snapshot: %w", err)
	}
	h := snapshotHeader{Space: st.space.Name, Cursor: seq, Change: c.ID, ChangeAt: c.At.UnixNano(), Records: st.idx.Len(), Written: time.Now().UTC()}
	hb, err := appendSnapshotHeader(nil, h)
	if err != nil {
		return fmt.Errorf("library: writing the index snapshot: %w", err)
	}
	removeStaleTemps(l.cfg.Snapshot)
	err = writeFileAtomic(l.cfg.Snapshot, func(w io.Writer) error {
		if _, err := w.Write(hb); err != nil {
			return err
		}
		return st.idx.Save(w)
	})
	if err != nil {
		return fmt.Errorf("library: writing the index snapshot: %w", err)
	}
	l.log.Info("experience library: index snapshot written", "snapshot", l.cfg.Snapshot, "space", h.Space,
		"experiences", h.Records, "cursor", seq, "took", time.Since(start).String())
	return nil
}

// servesItsSpace reports whether the library serves its configured space,
// and is not moving.
func (l *Library) servesItsSpace() bool {
	return l.next.Load() == nil && l.cur.Load().space.Name == l.cfg.Space.Name
}

// staleTemp is how old a temporary file of writeFileAtomic's must be to
// be taken for one a killed process left: writing a snapshot takes
// seconds.
const staleTemp = time.Hour

// removeStaleTemps removes the temporary files of path that processes
// killed while writing it left (a snapshot's is as large as the index).
func removeStaleTemps(path string) {
	dir, base := filepath.Split(path)
	es, _ := os.ReadDir(filepath.Clean(dir))
	for _, e := range es {
		name := e.Name()
		if !strings.HasPrefix(name, base+".") || !strings.HasSuffix(name, ".tmp") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleTemp {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// writeFileAtomic writes path through write: to a new file beside it,
// synced, then renamed over it and the directory synced, so that a crash
// leaves the old file or the new one whole, never a part.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
