package network

import (
	"bytes"
	"context"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// mapFetcher serves a log's files from memory.
type mapFetcher map[string][]byte

func (m mapFetcher) Fetch(ctx context.Context, path string) ([]byte, error) {
	if b, ok := m[path]; ok {
		return b, nil
	}
	return nil, ErrNotFound
}

// FuzzProveInclusion checks the proof against a log whose tiles the fuzzer
// may corrupt: an entry is proven at an index only if it is the entry
// there, whatever the tiles say, and nothing panics.
func FuzzProveInclusion(f *testing.F) {
	id := testIdentity(f, "nodeA")
	m := &memLog{signer: id.Signer, origin: "nodeA/hanzo"}
	const n = 300
	var entries [][]byte
	for i := range n {
		entries = append(entries, []byte{byte(i), byte(i >> 8), 'e'})
	}
	m.add(f, entries...)
	ctx := context.Background()
	msg, err := m.Checkpoint(ctx)
	if err != nil {
		f.Fatal(err)
	}
	c, err := OpenCheckpoint(msg, verifierOf(f, id), "")
	if err != nil {
		f.Fatal(err)
	}
	files := mapFetcher{}
	var paths []string
	for _, t := range tlog.NewTiles(tileHeight, 0, n) {
		data, err := m.ReadTile(ctx, t)
		if err != nil {
			f.Fatal(err)
		}
		files[TilePath(t)] = data
		paths = append(paths, TilePath(t))
	}
	f.Add(int64(7), []byte{7, 0, 'e'}, uint8(0), uint16(0), byte(0))
	f.Add(int64(299), []byte{43, 1, 'e'}, uint8(1), uint16(3), byte(1))
	f.Add(int64(7), []byte{8, 0, 'e'}, uint8(2), uint16(40), byte(0x80))
	f.Fuzz(func(t *testing.T, index int64, entry []byte, tile uint8, off uint16, flip byte) {
		fs := mapFetcher{}
		for p, b := range files {
			fs[p] = b
		}
		p := paths[int(tile)%len(paths)]
		if b := bytes.Clone(fs[p]); len(b) > 0 {
			b[int(off)%len(b)] ^= flip
			fs[p] = b
		}
		err := ProveInclusion(ctx, fs, c, index, entry)
		real := index >= 0 && index < n && bytes.Equal(entry, entries[index])
		if err == nil && !real {
			t.Fatalf("proved %x at %d; the entry there is not it", entry, index)
		}
		if err != nil && real && flip == 0 {
			t.Fatalf("real entry %d not proven with intact tiles: %v", index, err)
		}
	})
}
