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

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// MaxAppend bounds the records of one Append: one transaction, one
// checkpoint.
const MaxAppend = 4096

// Errors of the log, wrapped with details.
var (
	ErrNotFound   = errors.New("network: no such tile or entry")
	ErrWrongLog   = errors.New("network: log file belongs to another origin or key")
	ErrNotAuthor  = errors.New("network: record not signed by the log's key")
	ErrLogClosed  = errors.New("network: log closed")
	errAppendSize = errors.New("network: too many records in one append")
)

// LogConfig configures a node's log on one network.
type LogConfig struct {
	// Path is the SQLite file holding the log; created with its directory.
	Path string
	// Origin is the checkpoint origin line; see Origin.
	Origin string
	// Identity signs checkpoints; every appended record must be signed by
	// it too.
	Identity Identity
}

// Log is a node's append-only log of its own signed records on one
// network: an RFC 6962 Merkle tree kept as tlog stored hashes in SQLite,
// with a signed checkpoint after every append.
type Log struct {
	db       *sql.DB
	origin   string
	signer   note.Signer
	verifier note.Verifier

	appending sync.Mutex // serialises Append

	mu         sync.Mutex // protects the fields below; never held while waiting on the file
	size       int64
	checkpoint []byte // signed note of size
}

var _ TileSource = (*Log)(nil)

const logSchema = `
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), origin TEXT NOT NULL, vkey TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, note BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS published (id BLOB PRIMARY KEY, idx INTEGER NOT NULL);
`

// OpenLog opens or creates the log at cfg.Path. A file made for another
// origin or key is refused: a log signed by two keys is no log.
func OpenLog(ctx context.Context, cfg LogConfig) (*Log, error) {
	if cfg.Path == "" || cfg.Origin == "" || cfg.Identity.Signer == nil {
		return nil, errors.New("network: open log: path, origin and identity are required")
	}
	v, err := note.NewVerifier(cfg.Identity.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("network: open log: verifier key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("network: open log: %w", err)
	}
	db, err := sql.Open("sqlite", logDSN(cfg.Path))
	if err != nil {
		return nil, fmt.Errorf("network: open log: %w", err)
	}
	l := &Log{db: db, origin: cfg.Origin, signer: cfg.Identity.Signer, verifier: v}
	if err := l.init(ctx, cfg.Identity.VerifierKey); err != nil {
		db.Close()
		return nil, err
	}
	return l, nil
}

func logDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	return (&url.URL{Scheme: "file", Opaque: path, RawQuery: q.Encode()}).String()
}

func (l *Log) init(ctx context.Context, vkey string) error {
	if _, err := l.db.ExecContext(ctx, logSchema); err != nil {
		return fmt.Errorf("network: open log: schema: %w", err)
	}
	if _, err := l.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (id, origin, vkey) VALUES (1, ?, ?)`, l.origin, vkey); err != nil {
		return fmt.Errorf("network: open log: %w", err)
	}
	var origin, key string
	if err := l.db.QueryRowContext(ctx, `SELECT origin, vkey FROM meta WHERE id = 1`).Scan(&origin, &key); err != nil {
		return fmt.Errorf("network: open log: %w", err)
	}
	if origin != l.origin || key != vkey {
		return fmt.Errorf("%w: made for %q", ErrWrongLog, origin)
	}
	err := l.db.QueryRowContext(ctx, `SELECT size, note FROM checkpoint WHERE id = 1`).Scan(&l.size, &l.checkpoint)
	if errors.Is(err, sql.ErrNoRows) {
		// An empty log still has a signed checkpoint: size 0.
		return l.sign(ctx, l.db, 0)
	}
	if err != nil {
		return fmt.Errorf("network: open log: %w", err)
	}
	return nil
}

// execer is what sign writes through: the database or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// sign computes the tree hash at size n from q, signs a checkpoint for it
// and stores it; l.checkpoint and l.size change only after a commit.
func (l *Log) sign(ctx context.Context, q execer, n int64) error {
	msg, err := l.signTree(ctx, q, n, nil)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.size, l.checkpoint = n, msg
	l.mu.Unlock()
	return nil
}

func (l *Log) signTree(ctx context.Context, q execer, n int64, pending *pendingHashes) ([]byte, error) {
	h, err := tlog.TreeHash(n, hashReader{ctx: ctx, q: q, pending: pending})
	if err != nil {
		return nil, fmt.Errorf("network: tree hash: %w", err)
	}
	msg, err := SignCheckpoint(l.signer, Checkpoint{Origin: l.origin, Size: n, Hash: h})
	if err != nil {
		return nil, err
	}
	if _, err := q.ExecContext(ctx, `INSERT OR REPLACE INTO checkpoint (id, size, note) VALUES (1, ?, ?)`, n, msg); err != nil {
		return nil, fmt.Errorf("network: store checkpoint: %w", err)
	}
	return msg, nil
}

// Close closes the log's file.
func (l *Log) Close() error {
	if l == nil || l.db == nil {
		return nil
	}
	return l.db.Close()
}

// Origin is the log's checkpoint origin.
func (l *Log) Origin() string { return l.origin }

// Size is the number of records in the log.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Checkpoint returns the latest signed checkpoint.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.checkpoint...), nil
}

// Append adds encoded records, each signed by the log's key, and signs a
// checkpoint that includes them. It returns the index of the first one.
func (l *Log) Append(ctx context.Context, records ...[]byte) (int64, error) {
	if len(records) > MaxAppend {
		return 0, fmt.Errorf("%w: %d, over %d", errAppendSize, len(records), MaxAppend)
	}
	ids := make([]*[32]byte, len(records))
	for i, b := range records {
		r, err := Open(b, note.VerifierList(l.verifier))
		if err != nil {
			if errors.Is(err, ErrUnknownAuthor) {
				err = ErrNotAuthor
			}
			return 0, fmt.Errorf("network: append record %d: %w", i, err)
		}
		if e := r.Experience; e != nil {
			id := ExperienceID(e.Network, e.Domain, e.Text)
			ids[i] = &id
		}
	}
	l.appending.Lock()
	defer l.appending.Unlock()
	return l.appendLocked(ctx, records, ids)
}

// Publish signs with the log's key each experience the log does not hold
// yet (by ExperienceID) and appends them; it returns how many it added.
// Publishing the same experience again is a no-op, so callers may offer
// everything they share, as often as they like.
func (l *Log) Publish(ctx context.Context, es []Experience) (int, error) {
	l.appending.Lock()
	defer l.appending.Unlock()
	added := 0
	for len(es) > 0 {
		batch := es[:min(len(es), MaxAppend)]
		es = es[len(batch):]
		var records [][]byte
		var ids []*[32]byte
		seen := map[[32]byte]bool{}
		for i := range batch {
			e := &batch[i]
			id := ExperienceID(e.Network, e.Domain, e.Text)
			if seen[id] {
				continue
			}
			seen[id] = true
			var one int
			err := l.db.QueryRowContext(ctx, `SELECT 1 FROM published WHERE id = ?`, id[:]).Scan(&one)
			if err == nil {
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return added, fmt.Errorf("network: publish: %w", err)
			}
			r, err := Sign(l.signer, Record{Experience: e})
			if err != nil {
				return added, fmt.Errorf("network: publish: %w", err)
			}
			b, err := Encode(r)
			if err != nil {
				return added, fmt.Errorf("network: publish: %w", err)
			}
			records, ids = append(records, b), append(ids, &id)
		}
		if len(records) == 0 {
			continue
		}
		if _, err := l.appendLocked(ctx, records, ids); err != nil {
			return added, err
		}
		added += len(records)
	}
	return added, nil
}

// appendLocked appends records in one transaction, noting the experience
// ids (nil for votes) as published; l.appending is held.
func (l *Log) appendLocked(ctx context.Context, records [][]byte, ids []*[32]byte) (int64, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("network: append: %w", err)
	}
	defer tx.Rollback()
	first := l.Size()
	pending := &pendingHashes{base: tlog.StoredHashCount(first)}
	for i, b := range records {
		n := first + int64(i)
		if err := l.insert(ctx, tx, n, b, pending); err != nil {
			return 0, err
		}
		if ids[i] != nil {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO published (id, idx) VALUES (?, ?)`, ids[i][:], n); err != nil {
				return 0, fmt.Errorf("network: append: %w", err)
			}
		}
	}
	size := first + int64(len(records))
	msg, err := l.signTree(ctx, tx, size, pending)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("network: append: %w", err)
	}
	l.mu.Lock()
	l.size, l.checkpoint = size, msg
	l.mu.Unlock()
	return first, nil
}

// insert writes entry n and its stored hashes.
func (l *Log) insert(ctx context.Context, tx *sql.Tx, n int64, b []byte, pending *pendingHashes) error {
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
// bundle (L == EntriesLevel). A tile past the log's size is ErrNotFound.
func (l *Log) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	size := l.Size()
	if !tileInTree(t, size) {
		return nil, fmt.Errorf("%w: %s at size %d", ErrNotFound, TilePath(t), size)
	}
	if t.L == EntriesLevel {
		return l.entryBundle(ctx, t)
	}
	data, err := tlog.ReadTileData(t, hashReader{ctx: ctx, q: l.db})
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

func (l *Log) entryBundle(ctx context.Context, t tlog.Tile) ([]byte, error) {
	start := t.N * tileWidth
	rows, err := l.db.QueryContext(ctx, `SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx`, start, start+int64(t.W))
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
