package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Bounds of what a client reads from a log.
const (
	// MaxTileBytes is the largest tile a client accepts: a full entry
	// bundle of maximal records.
	MaxTileBytes = tileWidth * (2 + MaxRecordLen)
	// DefaultFetchTimeout bounds one fetch when the HTTP client has none.
	DefaultFetchTimeout = 30 * time.Second
)

// ErrNotIncluded reports an entry the checkpoint does not cover, or one
// whose inclusion proof fails.
var ErrNotIncluded = errors.New("network: entry not included in the log")

// ErrFetch reports a fetch that failed on the way (the peer unreachable,
// slow, or answering an error status), not data that proved invalid: a
// follower backs off from it but does not hold it against the peer.
var ErrFetch = errors.New("network: fetch failed")

// Fetcher reads a log's files by their C2SP path ("checkpoint",
// "tile/0/000"), returning ErrNotFound for one that does not exist.
type Fetcher interface {
	Fetch(ctx context.Context, path string) ([]byte, error)
}

// HTTPFetcher fetches a log served over HTTP (as Handler serves it).
type HTTPFetcher struct {
	// Base is the log's URL prefix, e.g. https://node.example/log/hanzo.
	Base string
	// Client makes the requests. nil means http.DefaultClient with
	// DefaultFetchTimeout per fetch.
	Client *http.Client
}

// Fetch implements Fetcher; bodies over MaxTileBytes are errors.
func (f HTTPFetcher) Fetch(ctx context.Context, path string) ([]byte, error) {
	c := f.Client
	if c == nil {
		c = http.DefaultClient
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultFetchTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(f.Base, "/")+"/"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("network: fetch %s: %w", path, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: %s: %s", ErrFetch, path, resp.Status)
	}
	return readBounded(resp.Body, path)
}

// ErrTileTooLarge reports a tile, bundle or checkpoint served over
// MaxTileBytes: refused as too_large, like a record over its bound.
var ErrTileTooLarge = errors.New("network: tile over its size bound")

func readBounded(r io.Reader, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxTileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("network: fetch %s: %w", path, err)
	}
	if len(data) > MaxTileBytes {
		return nil, fmt.Errorf("%w: fetch %s: over %d bytes", ErrTileTooLarge, path, MaxTileBytes)
	}
	return data, nil
}

// DirFetcher reads a log from files laid out as the URL paths, under the
// directory it names.
type DirFetcher string

// Fetch implements Fetcher.
func (d DirFetcher) Fetch(ctx context.Context, path string) ([]byte, error) {
	if !fs.ValidPath(path) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(path)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("network: read %s: %w", path, err)
	}
	defer f.Close()
	return readBounded(f, path)
}

// tileReader fetches hash tiles for tlog.TileHashReader, which checks
// each tile against the tree before using it.
type tileReader struct {
	ctx context.Context
	f   Fetcher
}

func (r tileReader) Height() int { return tileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.f.Fetch(r.ctx, TilePath(t))
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("network: tile %s: %d bytes; want %d", TilePath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// FetchCheckpoint fetches a log's checkpoint and verifies it with the
// log's key v; origin, when not empty, is the origin it must name.
func FetchCheckpoint(ctx context.Context, f Fetcher, v note.Verifier, origin string) (Checkpoint, []byte, error) {
	msg, err := f.Fetch(ctx, "checkpoint")
	if err != nil {
		return Checkpoint{}, nil, err
	}
	c, err := OpenCheckpoint(msg, v, origin)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	return c, msg, nil
}

// ProveInclusion checks that entry is record index of the tree c, with
// hashes fetched from f and checked against c.
func ProveInclusion(ctx context.Context, f Fetcher, c Checkpoint, index int64, entry []byte) error {
	if index < 0 || index >= c.Size {
		return fmt.Errorf("%w: index %d of a log of %d", ErrNotIncluded, index, c.Size)
	}
	hr := tlog.TileHashReader(c.Tree(), tileReader{ctx: ctx, f: f})
	proof, err := tlog.ProveRecord(c.Size, index, hr)
	if err != nil {
		return fmt.Errorf("network: inclusion proof of %d: %w", index, err)
	}
	if err := tlog.CheckRecord(proof, c.Size, c.Hash, index, tlog.RecordHash(entry)); err != nil {
		return fmt.Errorf("%w: index %d: %v", ErrNotIncluded, index, err)
	}
	return nil
}

// ProveConsistency checks that the tree c extends the tree old, with
// hashes fetched from f and checked against c. A log whose checkpoints
// fail it has shown two histories.
func ProveConsistency(ctx context.Context, f Fetcher, old, c Checkpoint) error {
	if c.Size < old.Size {
		return fmt.Errorf("%w: size %d after %d", ErrInconsistent, c.Size, old.Size)
	}
	if c.Size == old.Size {
		if c.Hash != old.Hash {
			return fmt.Errorf("%w: two roots at size %d", ErrInconsistent, c.Size)
		}
		return nil
	}
	if old.Size == 0 {
		return nil
	}
	hr := tlog.TileHashReader(c.Tree(), tileReader{ctx: ctx, f: f})
	proof, err := tlog.ProveTree(c.Size, old.Size, hr)
	if err != nil {
		return fmt.Errorf("network: consistency proof %d..%d: %w", old.Size, c.Size, err)
	}
	if err := tlog.CheckTree(proof, c.Size, c.Hash, old.Size, old.Hash); err != nil {
		return fmt.Errorf("%w: %d..%d: %v", ErrInconsistent, old.Size, c.Size, err)
	}
	return nil
}

// ErrInconsistent reports two checkpoints of one log that no append-only
// history explains: evidence of a fork.
var ErrInconsistent = errors.New("network: checkpoints are inconsistent")

// FetchEntries fetches records [start, end) of the tree c from its entry
// bundles. The bundles are not authenticated: prove each entry, or hash
// them into the tree, before trusting them.
func FetchEntries(ctx context.Context, f Fetcher, c Checkpoint, start, end int64) ([][]byte, error) {
	if start < 0 || end > c.Size || start > end {
		return nil, fmt.Errorf("%w: entries %d..%d of a log of %d", ErrNotFound, start, end, c.Size)
	}
	var out [][]byte
	for n := start / tileWidth; n*tileWidth < end; n++ {
		t := tlog.Tile{H: tileHeight, L: EntriesLevel, N: n, W: int(min(tileWidth, c.Size-n*tileWidth))}
		data, err := f.Fetch(ctx, TilePath(t))
		if err != nil {
			return nil, err
		}
		entries, err := SplitBundle(data, t.W)
		if err != nil {
			return nil, fmt.Errorf("network: %s: %w", TilePath(t), err)
		}
		for i, e := range entries {
			if idx := n*tileWidth + int64(i); idx >= start && idx < end {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// ErrBundle reports an entry bundle that is not w length-prefixed entries.
var ErrBundle = errors.New("network: malformed entry bundle")

// SplitBundle splits a C2SP entry bundle into its w entries.
func SplitBundle(data []byte, w int) ([][]byte, error) {
	if w < 1 || w > tileWidth {
		return nil, fmt.Errorf("%w: width %d", ErrBundle, w)
	}
	out := make([][]byte, 0, w)
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("%w: truncated length", ErrBundle)
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("%w: truncated entry", ErrBundle)
		}
		out = append(out, data[2:2+n:2+n])
		data = data[2+n:]
	}
	if len(out) != w {
		return nil, fmt.Errorf("%w: %d entries; want %d", ErrBundle, len(out), w)
	}
	return out, nil
}
