package network

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// tree is what a node's own log and a mirror of another node's log both
// keep in their SQLite file: the entries, their tlog stored hashes, and
// the signed checkpoint of the size served.
type tree struct {
	db *sql.DB

	mu         sync.Mutex // protects the fields below; never held while waiting on the file
	size       int64      // of checkpoint: what is served
	checkpoint []byte
	changed    chan struct{} // closed when checkpoint next changes; nil until asked for
}

const treeSchema = `
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), origin TEXT NOT NULL, vkey TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'log');
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, note BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS published (id BLOB PRIMARY KEY, idx INTEGER NOT NULL);
`

// openTree opens or creates the file at path for the log origin signed by
// vkey; kind ("log" or "mirror") keeps a node's own log and a mirror
// apart. A file made for another origin, key or kind is refused.
func openTree(ctx context.Context, path, origin, vkey, kind string) (*tree, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("network: open %s: %w", kind, err)
	}
	db, err := sql.Open("sqlite", treeDSN(path))
	if err != nil {
		return nil, fmt.Errorf("network: open %s: %w", kind, err)
	}
	t := &tree{db: db}
	if err := t.init(ctx, origin, vkey, kind); err != nil {
		db.Close()
		return nil, err
	}
	return t, nil
}

func treeDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	return (&url.URL{Scheme: "file", Opaque: path, RawQuery: q.Encode()}).String()
}

func (t *tree) init(ctx context.Context, origin, vkey, kind string) error {
	if _, err := t.db.ExecContext(ctx, treeSchema); err != nil {
		return fmt.Errorf("network: open %s: schema: %w", kind, err)
	}
	if _, err := t.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (id, origin, vkey, kind) VALUES (1, ?, ?, ?)`, origin, vkey, kind); err != nil {
		return fmt.Errorf("network: open %s: %w", kind, err)
	}
	var o, k, kd string
	if err := t.db.QueryRowContext(ctx, `SELECT origin, vkey, kind FROM meta WHERE id = 1`).Scan(&o, &k, &kd); err != nil {
		return fmt.Errorf("network: open %s: %w", kind, err)
	}
	if o != origin || k != vkey || kd != kind {
		return fmt.Errorf("%w: made for the %s of %q", ErrWrongLog, kd, o)
	}
	err := t.db.QueryRowContext(ctx, `SELECT size, note FROM checkpoint WHERE id = 1`).Scan(&t.size, &t.checkpoint)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("network: open %s: %w", kind, err)
	}
	return nil
}

// Close closes the file.
func (t *tree) Close() error {
	if t == nil || t.db == nil {
		return nil
	}
	return t.db.Close()
}

// Size is the number of records served.
func (t *tree) Size() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.size
}

// Checkpoint returns the signed checkpoint served; ErrNotFound before
// there is one.
func (t *tree) Checkpoint(ctx context.Context) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.checkpoint == nil {
		return nil, fmt.Errorf("%w: no checkpoint yet", ErrNotFound)
	}
	return append([]byte(nil), t.checkpoint...), nil
}

// serve makes checkpoint msg of size n the one served, after the
// transaction that stored it committed.
func (t *tree) serve(n int64, msg []byte) {
	t.mu.Lock()
	t.size, t.checkpoint = n, msg
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
	t.mu.Unlock()
}

// Changed returns a channel closed when the checkpoint served next
// changes: take it before reading the checkpoint, and no change is missed.
func (t *tree) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// storeCheckpoint writes the checkpoint served into the file.
func storeCheckpoint(ctx context.Context, q execer, n int64, msg []byte) error {
	if _, err := q.ExecContext(ctx, `INSERT OR REPLACE INTO checkpoint (id, size, note) VALUES (1, ?, ?)`, n, msg); err != nil {
		return fmt.Errorf("network: store checkpoint: %w", err)
	}
	return nil
}

// execer is what tree hashes are read and written through: the database
// or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// insertEntry writes entry n and its stored hashes.
func insertEntry(ctx context.Context, tx *sql.Tx, n int64, b []byte, pending *pendingHashes) error {
	hs, err := tlog.StoredHashes(n, b, hashReader{ctx: ctx, q: tx, pending: pending})
	if err != nil {
		return fmt.Errorf("network: append: hashes: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO entries (idx, data) VALUES (?, ?)`, n, b); err != nil {
		return fmt.Errorf("network: append: %w", err)
	}
	for _, h := range hs {
		idx := pending.base + int64(len(pending.hashes))
		if _, err := tx.ExecContext(ctx, `INSERT INTO hashes (idx, hash) VALUES (?, ?)`, idx, h[:]); err != nil {
			return fmt.Errorf("network: append: hash %d: %w", idx, err)
		}
		pending.hashes = append(pending.hashes, h)
	}
	return nil
}

// pendingHashes are stored hashes written in the current transaction,
// from index base on; the transaction sees them too, but reading them
// back is slower than keeping them.
type pendingHashes struct {
	base   int64
	hashes []tlog.Hash
}

// hashReader reads stored hashes for tlog, which has no context in its
// interface: the reader carries the caller's.
type hashReader struct {
	ctx     context.Context
	q       execer
	pending *pendingHashes
}

func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	want := map[int64][]int{} // stored index -> positions in out
	for i, idx := range indexes {
		if p := r.pending; p != nil && idx >= p.base && idx < p.base+int64(len(p.hashes)) {
			out[i] = p.hashes[idx-p.base]
			continue
		}
		want[idx] = append(want[idx], i)
	}
	if len(want) == 0 {
		return out, nil
	}
	// One query for the lot: a tile is 256 hashes.
	args := make([]any, 0, len(want))
	for idx := range want {
		args = append(args, idx)
	}
	q := `SELECT idx, hash FROM hashes WHERE idx IN (?` + strings.Repeat(",?", len(args)-1) + `)`
	rows, err := r.q.QueryContext(r.ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var idx int64
		var h []byte
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, err
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("network: stored hash %d has %d bytes", idx, len(h))
		}
		for _, i := range want[idx] {
			copy(out[i][:], h)
		}
		found++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if found != len(want) {
		return nil, fmt.Errorf("%w: %d of %d stored hashes", ErrNotFound, len(want)-found, len(want))
	}
	return out, nil
}

// ReadTile returns the data of tile t (height 8) as C2SP serves it: the
// hashes of a hash tile, or the uint16-length-prefixed records of an entry
// bundle (L == EntriesLevel). A tile past the size served is ErrNotFound.
func (tr *tree) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	size := tr.Size()
	if !tileInTree(t, size) {
		return nil, fmt.Errorf("%w: %s at size %d", ErrNotFound, TilePath(t), size)
	}
	if t.L == EntriesLevel {
		return tr.entryBundle(ctx, t)
	}
	data, err := tlog.ReadTileData(t, hashReader{ctx: ctx, q: tr.db})
	if err != nil {
		return nil, fmt.Errorf("network: read tile %s: %w", TilePath(t), err)
	}
	return data, nil
}

// tileInTree reports whether a tree of size leaves has all of tile t.
func tileInTree(t tlog.Tile, size int64) bool {
	if t.H != tileHeight || t.W < 1 || t.W > tileWidth || t.N < 0 || t.L < EntriesLevel || t.L > maxTileLevel {
		return false
	}
	level := max(t.L, 0)
	// Hashes at level 8*L: one per 256^L leaves.
	have := size >> (tileHeight * level)
	return t.N <= have/tileWidth && t.N*tileWidth+int64(t.W) <= have
}

func (tr *tree) entryBundle(ctx context.Context, t tlog.Tile) ([]byte, error) {
	start := t.N * tileWidth
	rows, err := tr.db.QueryContext(ctx, `SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx`, start, start+int64(t.W))
	if err != nil {
		return nil, fmt.Errorf("network: read entries: %w", err)
	}
	defer rows.Close()
	var out []byte
	next := start
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return nil, fmt.Errorf("network: read entries: %w", err)
		}
		if idx != next || len(data) > 0xffff {
			return nil, fmt.Errorf("network: read entries: entry %d missing or too large", next)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
		out = append(out, data...)
		next++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("network: read entries: %w", err)
	}
	if next != start+int64(t.W) {
		return nil, fmt.Errorf("network: read entries: entry %d missing", next)
	}
	return out, nil
}
