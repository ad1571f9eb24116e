package gpuidx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"testing"
)

// withChecksum is snapshot body b (everything before the checksum) with
// its checksum after it.
func withChecksum(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(bytes.Clone(b), crc32.ChecksumIEEE(b))
}

// A snapshot keeps the index's lists: an index loaded or restored from it
// searches by them at once, trains none, answers as the saved one does,
// and saves the same bytes again. An index that keeps no lists (a GPU's
// host mirror) loads the records alone.
func TestSnapshotKeepsLists(t *testing.T) {
	x := NewCPU(CPUConfig{ListsFrom: -1})
	qs := clustered(t, x, 6000, 7)
	x.trainLists()
	if x.Lists() == 0 {
		t.Fatal("no lists trained")
	}
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	snap := buf.Bytes()

	y, err := Load(bytes.NewReader(snap), CPUConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := NewCPU(CPUConfig{})
	fill(t, r, 30, 8)
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	for name, z := range map[string]*CPU{"loaded": y, "restored": r} {
		if z.Lists() != x.Lists() || z.training.Load() {
			t.Fatalf("%s: %d lists (training %v); want the saved %d, untrained", name, z.Lists(), z.training.Load(), x.Lists())
		}
		checkLists(t, z)
		for _, q := range qs {
			a, err1 := x.Search(context.Background(), q)
			b, err2 := z.Search(context.Background(), q)
			if err1 != nil || err2 != nil || !slices.Equal(a, b) {
				t.Fatalf("%s index answers %v, %v; the saved one %v, %v", name, b, err2, a, err1)
			}
		}
		var again bytes.Buffer
		if err := z.Save(&again); err != nil || !bytes.Equal(again.Bytes(), snap) {
			t.Fatalf("%s: re-saved snapshot differs (%v)", name, err)
		}
	}
	// Upserts after the load go to their lists.
	fill(t, y, 500, 9)
	checkLists(t, y)

	host, err := Load(bytes.NewReader(snap), CPUConfig{ListsFrom: -1})
	if err != nil || host.Lists() != 0 || host.Len() != x.Len() {
		t.Fatalf("loaded without lists: %d records, %d lists, %v; want %d, 0", host.Len(), host.Lists(), err, x.Len())
	}
	wide, err := Load(bytes.NewReader(snap), CPUConfig{PrefixWords: 12})
	if err != nil || wide.Lists() != 0 {
		t.Fatalf("loaded with other prefix words: %d lists, %v; want none (centroids of other widths)", wide.Lists(), err)
	}

	// A list number past the lists is refused.
	bad := bytes.Clone(snap[:len(snap)-4])
	binary.LittleEndian.PutUint32(bad[len(bad)-4:], uint32(x.Lists()))
	if _, err := Load(bytes.NewReader(withChecksum(bad)), CPUConfig{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("a record in list %d of %d: %v; want ErrFormat", x.Lists(), x.Lists(), err)
	}
}

// A version 2 snapshot (no lists section) still loads.
func TestSnapshotVersion2(t *testing.T) {
	x := NewCPU(CPUConfig{})
	recs := fill(t, x, 300, 5)
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if b[len(b)-5] != 0 {
		t.Fatalf("an index without lists saved lists section %d", b[len(b)-5])
	}
	v2 := versionOf(b[:len(b)-5], snapNoLists) // without the empty lists section and the checksum
	y, err := Load(bytes.NewReader(withChecksum(v2)), CPUConfig{})
	if err != nil || y.Len() != len(recs) {
		t.Fatalf("version 2: %d records, %v; want %d", y.Len(), err, len(recs))
	}
	for id, r := range recs {
		if m, c, ok := y.Get(id); !ok || m != r.m || c != r.c {
			t.Fatalf("version 2: record %s loaded as %+v", id, m)
		}
	}
}
