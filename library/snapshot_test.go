package library_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// logRecorder is a slog.Handler that keeps what is logged to it.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// messages returns what was logged at level, with each record's
// attributes, one line each.
func (r *logRecorder) messages(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Level != level {
			continue
		}
		var b strings.Builder
		b.WriteString(rec.Message)
		rec.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		out = append(out, b.String())
	}
	return out
}

// said reports whether a message at level contains s.
func (r *logRecorder) said(level slog.Level, s string) bool {
	for _, m := range r.messages(level) {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// started is a library over the store in a data directory, keeping its
// index in a snapshot there as serve does.
type started struct {
	lib  *library.Library
	idx  *gpuidx.CPU
	st   *store.SQLite
	log  *logRecorder
	once sync.Once
}

func start(t *testing.T, dir string) *started {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &started{idx: gpuidx.NewCPU(gpuidx.CPUConfig{}), st: st, log: &logRecorder{}}
	r.lib, err = library.New(ctx, library.Config{Store: st, Index: r.idx, Space: hashSpace(512, 3),
		Snapshot: filepath.Join(dir, library.SnapshotFile), Logger: slog.New(r.log)})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop closes the library, which writes the snapshot, then the store.
func (r *started) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		if err := r.lib.Close(); err != nil {
			t.Errorf("closing the library: %v", err)
		}
		r.st.Close()
	})
}

// rebuilt is the index a library without a snapshot reads from the store
// in dir.
func rebuilt(t *testing.T, dir string, sp library.Space) *gpuidx.CPU {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idx := gpuidx.NewCPU(gpuidx.CPUConfig{})
	lib, err := library.New(ctx, library.Config{Store: st, Index: idx, Space: sp})
	if err != nil {
		t.Fatal(err)
	}
	lib.Close()
	return idx
}

// sameIndex fails the test unless got holds what want holds: the same
// number of records, and for every id the test ever wrote, the same
// record or none in both. Every record of want must be one of ids.
func sameIndex(t *testing.T, got, want *gpuidx.CPU, ids []string) {
	t.Helper()
	if got.Len() != want.Len() {
		t.Fatalf("the index holds %d records; a full read gives %d", got.Len(), want.Len())
	}
	held := 0
	for _, id := range ids {
		gm, gc, gok := got.Get(id)
		wm, wc, wok := want.Get(id)
		if gok != wok || gm != wm || gc != wc {
			t.Fatalf("record %.16s: held %v %+v; a full read gives %v %+v", id, gok, gm, wok, wm)
		}
		if wok {
			held++
		}
	}
	if held != want.Len() {
		t.Fatalf("the full read holds %d records the test did not write", want.Len()-held)
	}
}

// addSome adds n experiences through lib, in two domains, and returns
// their ids.
func addSome(t *testing.T, lib *library.Library, prefix string, n int) []string {
	t.Helper()
	var es []store.Experience
	for i := range n {
		es = append(es, store.Experience{Text: fmt.Sprintf("%s lesson %d: close what you open and check the error", prefix, i),
			Domain: []string{"code.go", "cooking"}[i%2], Confidence: 0.8})
	}
	got, _, err := lib.AddMany(context.Background(), es)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(got))
	for i, e := range got {
		ids[i] = e.ID
	}
	return ids
}

// change retires ids[0], re-scores ids[1] and deletes ids[2], through lib.
func change(t *testing.T, lib *library.Library, ids []string) {
	t.Helper()
	ctx := context.Background()
	retired, conf := store.StatusRetired, 0.35
	if _, err := lib.Update(ctx, ids[0], store.Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	if _, err := lib.Update(ctx, ids[1], store.Update{Confidence: &conf}); err != nil {
		t.Fatal(err)
	}
	if err := lib.Delete(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
}

// A restart loads the snapshot written at Close instead of reading the
// store, and holds what a full read would.
func TestSnapshotRestart(t *testing.T) {
	dir := t.TempDir()
	first := start(t, dir)
	if !first.log.said(slog.LevelInfo, "no index snapshot") || len(first.log.messages(slog.LevelWarn)) != 0 {
		t.Fatalf("a first start without a snapshot: info %q, warn %q", first.log.messages(slog.LevelInfo), first.log.messages(slog.LevelWarn))
	}
	ids := addSome(t, first.lib, "first", 40)
	change(t, first.lib, ids)
	// What a process killed while writing a snapshot left, long ago, is
	// removed; what one writing now has is not.
	left, writing := filepath.Join(dir, library.SnapshotFile+".123.tmp"), filepath.Join(dir, library.SnapshotFile+".456.tmp")
	for _, f := range []string{left, writing} {
		writeFile(t, f, []byte("part of an index"))
	}
	if err := os.Chtimes(left, time.Time{}, time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	first.stop(t)
	if !first.log.said(slog.LevelInfo, "index snapshot written") {
		t.Fatalf("Close wrote no snapshot: %q", first.log.messages(slog.LevelInfo))
	}
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a temporary file left an hour ago: %v", err)
	}
	if _, err := os.Stat(writing); err != nil {
		t.Errorf("a temporary file being written: %v", err)
	}

	again := start(t, dir)
	if !again.log.said(slog.LevelInfo, "index loaded from its snapshot") || len(again.log.messages(slog.LevelWarn)) != 0 {
		t.Fatalf("the restart did not load the snapshot: info %q, warn %q", again.log.messages(slog.LevelInfo), again.log.messages(slog.LevelWarn))
	}
	sameIndex(t, again.idx, rebuilt(t, dir, hashSpace(512, 3)), ids)
	q := vector(t, again.lib, fmt.Sprintf("first lesson %d: close what you open and check the error", 7))
	if !found(t, again.lib, q, ids[7]) {
		t.Error("the restarted library does not find an experience it holds")
	}
}

// Writes another process makes after the snapshot, before the restart,
// are applied at the restart; the Follow position carries on from them.
func TestSnapshotAppliesLaterWrites(t *testing.T) {
	dir := t.TempDir()
	first := start(t, dir)
	ids := addSome(t, first.lib, "first", 20)
	first.stop(t)

	w, _ := open(t, dir) // another process, keeping no snapshot
	later := addSome(t, w, "later", 10)
	change(t, w, ids)
	change(t, w, later)
	ids = append(ids, later...)

	again := start(t, dir)
	if !again.log.said(slog.LevelInfo, "changes_applied=13") {
		t.Fatalf("the restart did not apply the 13 experiences changed: %q, warn %q", again.log.messages(slog.LevelInfo), again.log.messages(slog.LevelWarn))
	}
	sameIndex(t, again.idx, rebuilt(t, dir, hashSpace(512, 3)), ids)

	// Follow's position is where the changes applied ended: the snapshot
	// written next is at the end of the log.
	again.stop(t)
	last, err := w.Store().LastChange(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h := snapshotHeader(t, dir); h.Cursor != last {
		t.Fatalf("the next snapshot is at change %d; the log ends at %d", h.Cursor, last)
	}
}

// snapshotHeader reads the header of the snapshot in dir.
func snapshotHeader(t *testing.T, dir string) (h struct{ Cursor int64 }) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, library.SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint32(b[12:])
	if err := json.Unmarshal(b[16:16+n], &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// A snapshot the store does not vouch for, or that does not read, is not
// used: the start says so once and reads the store, and the next start
// uses the snapshot written at its Close.
func TestSnapshotFallsBack(t *testing.T) {
	// snapshotOf writes a library's snapshot for a store with n
	// experiences in dir, and returns the snapshot's bytes and the ids.
	snapshotOf := func(t *testing.T, dir, prefix string, n int) ([]byte, []string) {
		r := start(t, dir)
		ids := addSome(t, r.lib, prefix, n)
		r.stop(t)
		b, err := os.ReadFile(filepath.Join(dir, library.SnapshotFile))
		if err != nil {
			t.Fatal(err)
		}
		return b, ids
	}
	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 0x10
		return b
	}
	for _, tt := range []struct {
		name string
		// spoil leaves a snapshot in dir that must not be used (the store
		// holds ids) and returns what the log must say why.
		spoil func(t *testing.T, dir string) (ids []string, reason string)
	}{
		{"corrupt index", func(t *testing.T, dir string) ([]string, string) {
			b, ids := snapshotOf(t, dir, "a", 30)
			writeSnapshot(t, dir, flip(b, len(b)-100))
			return ids, "checksum"
		}},
		{"corrupt header", func(t *testing.T, dir string) ([]string, string) {
			b, ids := snapshotOf(t, dir, "a", 30)
			writeSnapshot(t, dir, flip(b, 20))
			return ids, "checksum"
		}},
		{"truncated", func(t *testing.T, dir string) ([]string, string) {
			b, ids := snapshotOf(t, dir, "a", 30)
			writeSnapshot(t, dir, b[:len(b)/2])
			return ids, "not an index snapshot"
		}},
		{"not a snapshot", func(t *testing.T, dir string) ([]string, string) {
			_, ids := snapshotOf(t, dir, "a", 30)
			writeSnapshot(t, dir, []byte("SQLite format 3\x00 and then some more bytes"))
			return ids, "not an index snapshot"
		}},
		{"another store", func(t *testing.T, dir string) ([]string, string) {
			// The same number of experiences and more changes, so that
			// only the change logged at the cursor tells the stores apart.
			b, _ := snapshotOf(t, t.TempDir(), "a", 30)
			r := start(t, dir)
			ids := addSome(t, r.lib, "b", 32)
			for _, id := range ids[30:] {
				if err := r.lib.Delete(context.Background(), id); err != nil {
					t.Fatal(err)
				}
			}
			r.stop(t)
			writeSnapshot(t, dir, b)
			return ids, "another change"
		}},
		{"cursor ahead of the store", func(t *testing.T, dir string) ([]string, string) {
			b, _ := snapshotOf(t, t.TempDir(), "a", 30)
			r := start(t, dir)
			ids := addSome(t, r.lib, "b", 10)
			r.stop(t)
			writeSnapshot(t, dir, b)
			return ids, "log ends at 10"
		}},
		{"changes pruned past it", func(t *testing.T, dir string) ([]string, string) {
			_, ids := snapshotOf(t, dir, "a", 30)
			w, st := open(t, dir)
			ids = append(ids, addSome(t, w, "b", 5)...)
			if _, err := st.PruneChanges(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			return ids, "no longer holds change 30"
		}},
		{"missing a record", func(t *testing.T, dir string) ([]string, string) {
			// A snapshot that the change log vouches for but that does not
			// hold what the store does: the counts tell.
			b, ids := snapshotOf(t, dir, "a", 30)
			writeSnapshot(t, dir, withoutRecord(t, b, ids[4]))
			return ids, "the index holds 29 codes"
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ids, reason := tt.spoil(t, dir)
			r := start(t, dir)
			warns := r.log.messages(slog.LevelWarn)
			if len(warns) != 1 || !strings.Contains(warns[0], "not used") || !strings.Contains(warns[0], reason) {
				t.Fatalf("warnings %q; want one saying the snapshot is not used: %s", warns, reason)
			}
			t.Log(warns[0])
			if r.log.said(slog.LevelInfo, "index loaded from its snapshot") {
				t.Fatal("the snapshot was used")
			}
			sameIndex(t, r.idx, rebuilt(t, dir, hashSpace(512, 3)), ids)
			r.stop(t)

			again := start(t, dir)
			if !again.log.said(slog.LevelInfo, "index loaded from its snapshot") {
				t.Fatalf("the next start did not use the new snapshot: %q", again.log.messages(slog.LevelWarn))
			}
			sameIndex(t, again.idx, rebuilt(t, dir, hashSpace(512, 3)), ids)
		})
	}
}

// A snapshot of another space is not used by a library of this one.
func TestSnapshotOfAnotherSpace(t *testing.T) {
	dir := t.TempDir()
	first := start(t, dir)
	ids := addSome(t, first.lib, "a", 10)
	first.stop(t)
	st, err := store.OpenDir(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := &logRecorder{}
	idx := gpuidx.NewCPU(gpuidx.CPUConfig{})
	// An embedder that is down: nothing is re-embedded into the space
	// while the test looks.
	other := library.Space{Name: "hash:256:9", Embedder: library.EmbedFunc(func(context.Context, []string) ([][]float32, error) {
		return nil, errors.New("down")
	})}
	lib, err := library.New(context.Background(), library.Config{Store: st, Index: idx, Space: other,
		Snapshot: filepath.Join(dir, library.SnapshotFile), Logger: slog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	// The down embedder warns too, from the background, when it is tried:
	// only the warnings about the snapshot count here.
	var about []string
	for _, w := range log.messages(slog.LevelWarn) {
		if strings.Contains(w, "snapshot") {
			about = append(about, w)
		}
	}
	if len(about) != 1 || !strings.Contains(about[0], "of space "+hashSpace(512, 3).Name) {
		t.Fatalf("warnings %q; want one saying the snapshot is of another space", about)
	}
	if idx.Len() != 0 || lib.Stale() != len(ids) {
		t.Fatalf("index %d, stale %d; want none indexed and %d to re-embed", idx.Len(), lib.Stale(), len(ids))
	}
}

func writeSnapshot(t *testing.T, dir string, b []byte) {
	t.Helper()
	writeFile(t, filepath.Join(dir, library.SnapshotFile), b)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// withoutRecord is snapshot b less the record id, framed as a library
// writes it: a snapshot whose every checksum and count agrees, of an index
// that does not hold what the store does.
func withoutRecord(t *testing.T, b []byte, id string) []byte {
	t.Helper()
	n := binary.LittleEndian.Uint32(b[12:])
	var h map[string]any
	if err := json.Unmarshal(b[16:16+n], &h); err != nil {
		t.Fatal(err)
	}
	x, err := gpuidx.Load(bytes.NewReader(b[16+n+4:]), gpuidx.CPUConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !x.Delete(id) {
		t.Fatalf("the snapshot does not hold %.16s", id)
	}
	h["records"] = x.Len()
	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), b[:12]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(js)))
	out = append(out, js...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out))
	var idx bytes.Buffer
	if err := x.Save(&idx); err != nil {
		t.Fatal(err)
	}
	return append(out, idx.Bytes()...)
}
