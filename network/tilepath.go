package network

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// C2SP tlog-tiles fixes the tile height at 8: a full tile holds 256 hashes
// or 256 entries.
const (
	tileHeight = 8
	tileWidth  = 1 << tileHeight
	// maxTileLevel bounds L: 256^7 leaves is beyond any int64 tree anyway.
	maxTileLevel = 7
)

// EntriesLevel is the tlog.Tile.L of an entry bundle (tile/entries/...).
const EntriesLevel = -1

// ErrTilePath reports a path that is not a C2SP tile path.
var ErrTilePath = errors.New("network: not a tile path")

// TilePath returns the C2SP tlog-tiles path of t ("tile/0/x001/234",
// "tile/entries/005.p/7"): tlog.Tile.Path has the height in it, C2SP not.
func TilePath(t tlog.Tile) string {
	level := strconv.Itoa(t.L)
	if t.L == EntriesLevel {
		level = "entries"
	}
	p := "tile/" + level + "/" + tileIndexPath(t.N)
	if t.W != tileWidth {
		p += ".p/" + strconv.Itoa(t.W)
	}
	return p
}

// tileIndexPath writes n as 3-digit groups, all but the last prefixed
// with x: 1234067 is x001/x234/067.
func tileIndexPath(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// ParseTilePath parses a C2SP tile path, the inverse of TilePath. The
// tile has height 8; an entry bundle has L == EntriesLevel.
func ParseTilePath(p string) (tlog.Tile, error) {
	bad := fmt.Errorf("%w: %q", ErrTilePath, p)
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return tlog.Tile{}, bad
	}
	level, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return tlog.Tile{}, bad
	}
	t := tlog.Tile{H: tileHeight, W: tileWidth}
	if level == "entries" {
		t.L = EntriesLevel
	} else {
		l, err := strconv.Atoi(level)
		if err != nil || l < 0 || l > maxTileLevel || strconv.Itoa(l) != level {
			return tlog.Tile{}, bad
		}
		t.L = l
	}
	if idx, w, ok := strings.Cut(rest, ".p/"); ok {
		width, err := strconv.Atoi(w)
		if err != nil || width < 1 || width >= tileWidth || strconv.Itoa(width) != w {
			return tlog.Tile{}, bad
		}
		t.W, rest = width, idx
	}
	n, ok := parseTileIndex(rest)
	if !ok {
		return tlog.Tile{}, bad
	}
	t.N = n
	return t, nil
}

func parseTileIndex(s string) (int64, bool) {
	parts := strings.Split(s, "/")
	// int64 has 19 digits: at most 7 groups.
	if len(parts) > 7 {
		return 0, false
	}
	var n int64
	for i, part := range parts {
		if i < len(parts)-1 {
			var ok bool
			if part, ok = strings.CutPrefix(part, "x"); !ok {
				return 0, false
			}
		}
		if len(part) != 3 || part[0] < '0' || part[0] > '9' || part[1] < '0' || part[1] > '9' || part[2] < '0' || part[2] > '9' {
			return 0, false
		}
		d, _ := strconv.Atoi(part)
		if n > (1<<63-1-int64(d))/1000 {
			return 0, false
		}
		n = n*1000 + int64(d)
	}
	// The first group has no leading zero unless it is the only one, so
	// that each index has one path.
	if len(parts) > 1 && parts[0] == "x000" {
		return 0, false
	}
	return n, true
}
