package network

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MirrorConfig configures a mirror of another node's log.
type MirrorConfig struct {
	// Path is the SQLite file holding the mirror.
	Path string
	// Origin is the mirrored log's checkpoint origin. Required.
	Origin string
	// Key is the mirrored log's verifier key ("name+hash+key"). Required.
	Key string
}

// Mirror is a copy of another node's log, served as that node serves it:
// its checkpoints, still signed by the node, and tiles recomputed here
// from the entries, so that nodes that never talk to the author can follow
// it through this one. A mirror serves a checkpoint only once it holds
// every entry below it and the root it computes is the one signed.
type Mirror struct {
	*tree
	origin string
	key    note.Verifier

	adding sync.Mutex // serialises Add; protects held
	held   int64      // entries stored, at or past the size served
}

var _ TileSource = (*Mirror)(nil)

// OpenMirror opens or creates a mirror.
func OpenMirror(ctx context.Context, cfg MirrorConfig) (*Mirror, error) {
	if cfg.Path == "" || cfg.Origin == "" {
		return nil, errors.New("network: open mirror: path and origin are required")
	}
	v, err := note.NewVerifier(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("network: open mirror: key: %w", err)
	}
	t, err := openTree(ctx, cfg.Path, cfg.Origin, cfg.Key, "mirror")
	if err != nil {
		return nil, err
	}
	m := &Mirror{tree: t, origin: cfg.Origin, key: v}
	if err := t.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx) + 1, 0) FROM entries`).Scan(&m.held); err != nil {
		t.Close()
		return nil, fmt.Errorf("network: open mirror: %w", err)
	}
	return m, nil
}

// Held is how many entries the mirror stores, served or not yet.
func (m *Mirror) Held() int64 {
	m.adding.Lock()
	defer m.adding.Unlock()
	return m.held
}

// Add stores entries [start, start+len(entries)) of the log whose signed
// checkpoint is msg, and serves msg once the mirror holds all of its
// entries and their root is the one msg signs. Entries it holds already
// are skipped; a gap is an error. The entries must have been checked
// against msg's tree (Follower does); the root check here catches any that
// were not, before anything is served.
func (m *Mirror) Add(ctx context.Context, msg []byte, start int64, entries [][]byte) error {
	c, err := OpenCheckpoint(msg, m.key, m.origin)
	if err != nil {
		return err
	}
	m.adding.Lock()
	defer m.adding.Unlock()
	if start > m.held {
		return fmt.Errorf("network: mirror: entries from %d, holding %d", start, m.held)
	}
	if skip := min(m.held-start, int64(len(entries))); skip > 0 {
		entries, start = entries[skip:], start+skip
	}
	end := start + int64(len(entries))
	if end > c.Size {
		return fmt.Errorf("%w: entries to %d past the checkpoint's %d", ErrBadEntry, end, c.Size)
	}
	if c.Size < m.Size() {
		return fmt.Errorf("%w: size %d, serving %d", ErrStale, c.Size, m.Size())
	}
	if len(entries) > MaxMaxEntries {
		return fmt.Errorf("network: mirror: %d entries in one add, over %d", len(entries), MaxMaxEntries)
	}
	return m.store(ctx, msg, c, start, entries)
}

// serving reports whether the mirror serves a checkpoint yet.
func (m *Mirror) serving() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkpoint != nil
}

// store writes entries and, when they complete c's tree and match its
// root, c as the checkpoint served, in one transaction.
func (m *Mirror) store(ctx context.Context, msg []byte, c Checkpoint, start int64, entries [][]byte) error {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("network: mirror: %w", err)
	}
	defer tx.Rollback()
	pending := &pendingHashes{base: tlog.StoredHashCount(start)}
	for i, b := range entries {
		if err := insertEntry(ctx, tx, start+int64(i), b, pending); err != nil {
			return err
		}
	}
	held := start + int64(len(entries))
	complete := held == c.Size && (c.Size > m.Size() || !m.serving())
	if complete {
		h, err := tlog.TreeHash(c.Size, hashReader{ctx: ctx, q: tx, pending: pending})
		if err != nil {
			return fmt.Errorf("network: mirror: tree hash: %w", err)
		}
		if h != c.Hash {
			return fmt.Errorf("%w: the entries' root is not the one signed at %d", ErrBadEntry, c.Size)
		}
		if err := storeCheckpoint(ctx, tx, c.Size, msg); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("network: mirror: %w", err)
	}
	m.held = held
	if complete {
		m.serve(c.Size, msg)
	}
	return nil
}
