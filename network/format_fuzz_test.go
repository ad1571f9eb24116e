package network

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func TestTilePath(t *testing.T) {
	for _, tt := range []struct {
		tile tlog.Tile
		path string
	}{
		{tlog.Tile{H: 8, L: 0, N: 0, W: 256}, "tile/0/000"},
		{tlog.Tile{H: 8, L: 1, N: 1234067, W: 256}, "tile/1/x001/x234/067"},
		{tlog.Tile{H: 8, L: 0, N: 1000, W: 7}, "tile/0/x001/000.p/7"},
		{tlog.Tile{H: 8, L: EntriesLevel, N: 5, W: 255}, "tile/entries/005.p/255"},
	} {
		if got := TilePath(tt.tile); got != tt.path {
			t.Errorf("TilePath(%+v) = %q; want %q", tt.tile, got, tt.path)
		}
		if got, err := ParseTilePath(tt.path); err != nil || got != tt.tile {
			t.Errorf("ParseTilePath(%q) = %+v, %v; want %+v", tt.path, got, err, tt.tile)
		}
	}
	for _, p := range []string{"", "tile/", "tile/0", "tile/0/", "tile/00/000", "tile/-1/000", "tile/8/000",
		"tile/0/0", "tile/0/0000", "tile/0/x000/001", "tile/0/001/002", "tile/0/x001", "tile/0/000.p/0",
		"tile/0/000.p/256", "tile/0/000.p/07", "tile/data/000", "tile/0/00a", "tile/0/x999/x999/x999/x999/x999/x999/x999/999"} {
		if tile, err := ParseTilePath(p); !errors.Is(err, ErrTilePath) {
			t.Errorf("ParseTilePath(%q) = %+v, %v; want ErrTilePath", p, tile, err)
		}
	}
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/1/x001/x234/067", "tile/entries/005.p/255", "tile/0/x001/000.p/7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tile, err := ParseTilePath(p)
		if err != nil {
			return
		}
		if got := TilePath(tile); got != p {
			t.Fatalf("ParseTilePath(%q) = %+v, which formats as %q", p, tile, got)
		}
		if tile.N < 0 || tile.W < 1 || tile.W > 256 || tile.L < EntriesLevel || tile.L > maxTileLevel {
			t.Fatalf("ParseTilePath(%q) = %+v out of range", p, tile)
		}
	})
}

func TestParseCheckpoint(t *testing.T) {
	good := "nodeA/hanzo\n12\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	c, err := ParseCheckpoint([]byte(good))
	if err != nil || c.Origin != "nodeA/hanzo" || c.Size != 12 {
		t.Fatalf("ParseCheckpoint(good) = %+v, %v", c, err)
	}
	for _, s := range []string{
		"", "nodeA/hanzo\n12\n", "nodeA/hanzo\n12\nAAAA\n",
		"nodeA/hanzo\n012\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"nodeA/hanzo\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"nodeA/hanzo\n+1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"nodeA/hanzo\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n", // non-canonical base64
		"nodeA/hanzo\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",   // no final newline
		"nodeA/hanzo\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
		"\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	} {
		if c, err := ParseCheckpoint([]byte(s)); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("ParseCheckpoint(%q) = %+v, %v; want ErrCheckpoint", s, c, err)
		}
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("nodeA/hanzo\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		if got := c.Format(); !bytes.Equal(got, text) {
			t.Fatalf("ParseCheckpoint(%q) = %+v, which formats as %q", text, c, got)
		}
		again, err := ParseCheckpoint(c.Format())
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("second parse %+v, %v; want %+v", again, err, c)
		}
	})
}

// A signed checkpoint opens only with its key: fuzzing the signed note
// never yields a checkpoint the key did not sign.
func FuzzOpenCheckpoint(f *testing.F) {
	id := testIdentity(f, "nodeA")
	v := verifierOf(f, id)
	signed := func(c Checkpoint) []byte {
		msg, err := SignCheckpoint(id.Signer, c)
		if err != nil {
			f.Fatal(err)
		}
		return msg
	}
	c := Checkpoint{Origin: "nodeA/hanzo", Size: 3, Hash: tlog.RecordHash([]byte("x"))}
	good := signed(c)
	f.Add(good)
	f.Add(signed(Checkpoint{Origin: "o", Size: 0}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, err := OpenCheckpoint(msg, v, "")
		if err != nil {
			return
		}
		// Only signed texts open; the fuzzer cannot sign, so what opened
		// is one of the seeds' texts (with signature lines rearranged).
		if !reflect.DeepEqual(got, c) && !reflect.DeepEqual(got, Checkpoint{Origin: "o", Size: 0}) {
			t.Fatalf("opened a checkpoint nobody signed: %+v", got)
		}
	})
}

func FuzzSplitBundle(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 0, 0}, 2)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, data []byte, w int) {
		entries, err := SplitBundle(data, w)
		if err != nil {
			return
		}
		var again []byte
		for _, e := range entries {
			again = append(again, byte(len(e)>>8), byte(len(e)))
			again = append(again, e...)
		}
		if !bytes.Equal(again, data) || len(entries) != w {
			t.Fatalf("SplitBundle(%x, %d) = %d entries that join to %x", data, w, len(entries), again)
		}
	})
}
