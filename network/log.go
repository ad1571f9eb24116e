package network

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxAppend bounds the records of one Append: one transaction, one
// checkpoint.
const MaxAppend = 4096

// Errors of the log, wrapped with details.
var (
	ErrNotFound   = errors.New("network: no such tile or entry")
	ErrWrongLog   = errors.New("network: file belongs to another log, key or kind")
	ErrNotAuthor  = errors.New("network: record not signed by the log's key")
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
// with a signed checkpoint after every append. Close it when done.
type Log struct {
	*tree
	origin   string
	signer   note.Signer
	verifier note.Verifier

	appending sync.Mutex // serialises appends
}

var _ TileSource = (*Log)(nil)

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
	t, err := openTree(ctx, cfg.Path, cfg.Origin, cfg.Identity.VerifierKey, "log")
	if err != nil {
		return nil, err
	}
	l := &Log{tree: t, origin: cfg.Origin, signer: cfg.Identity.Signer, verifier: v}
	if _, err := t.db.ExecContext(ctx, signedSchema); err != nil {
		t.Close()
		return nil, fmt.Errorf("network: open log: %w", err)
	}
	if t.checkpoint == nil {
		// An empty log still has a signed checkpoint: size 0.
		msg, err := l.signTree(ctx, t.db, 0, nil)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.serve(0, msg)
	}
	return l, nil
}

// signTree computes the tree hash at size n, signs a checkpoint for it and
// stores it through q.
func (l *Log) signTree(ctx context.Context, q execer, n int64, pending *pendingHashes) ([]byte, error) {
	h, err := tlog.TreeHash(n, hashReader{ctx: ctx, q: q, pending: pending})
	if err != nil {
		return nil, fmt.Errorf("network: tree hash: %w", err)
	}
	msg, err := SignCheckpoint(l.signer, Checkpoint{Origin: l.origin, Size: n, Hash: h})
	if err != nil {
		return nil, err
	}
	if err := storeCheckpoint(ctx, q, n, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// Origin is the log's checkpoint origin.
func (l *Log) Origin() string { return l.origin }

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
	return l.appendLocked(ctx, records, ids, nil)
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
		if _, err := l.appendLocked(ctx, records, ids, nil); err != nil {
			return added, err
		}
		added += len(records)
	}
	return added, nil
}

// appendLocked appends records in one transaction, noting the experience
// ids (nil for votes) as published, and runs also, when not nil, in the
// same transaction with the index of the first record; l.appending is
// held.
func (l *Log) appendLocked(ctx context.Context, records [][]byte, ids []*[32]byte, also func(*sql.Tx, int64) error) (int64, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("network: append: %w", err)
	}
	defer tx.Rollback()
	// The size comes from the file, under the write lock the transaction
	// holds: another process on the same data directory may have appended.
	var first int64
	if err := tx.QueryRowContext(ctx, `SELECT size FROM checkpoint WHERE id = 1`).Scan(&first); err != nil {
		return 0, fmt.Errorf("network: append: %w", err)
	}
	pending := &pendingHashes{base: tlog.StoredHashCount(first)}
	for i, b := range records {
		n := first + int64(i)
		if err := insertEntry(ctx, tx, n, b, pending); err != nil {
			return 0, err
		}
		if ids[i] != nil {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO published (id, idx) VALUES (?, ?)`, ids[i][:], n); err != nil {
				return 0, fmt.Errorf("network: append: %w", err)
			}
		}
	}
	if also != nil {
		if err := also(tx, first); err != nil {
			return 0, fmt.Errorf("network: append: %w", err)
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
	l.serve(size, msg)
	return first, nil
}
