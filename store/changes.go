package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The change log
//
// Every insert, update and delete of an experience, by any process that
// writes the file, adds a row to experience_changes (triggers do it; see
// migration 4). A process that keeps state derived from experiences, such
// as a search index, remembers the last seq it applied and asks Changes for
// what came after. Re-applying a change is harmless (the reader reloads the
// record's current state), so a reader that is unsure whether it saw a
// change can start from an earlier seq.
//
// Retention: PruneChanges keeps the newest keepRows rows (DefaultKeepChanges
// by default) and drops the rest. Readers that poll call it now and then;
// the table is then bounded by keepRows plus the writes made between two
// prunes. A reader whose cursor falls behind the oldest kept row gets
// ErrChangesPruned from Changes and must resynchronise from the records
// themselves.

// ErrChangesPruned reports that rows after the caller's cursor have been
// pruned from the change log, so Changes cannot say everything that
// changed since. Resynchronise from the records, then continue from the
// LastChange taken before doing so.
var ErrChangesPruned = errors.New("store: change log pruned past the cursor")

// Change log limits.
const (
	// DefaultKeepChanges is how many change log rows PruneChanges keeps by
	// default: at about 100 bytes a row, some 10 MB; at one change per
	// second, more than a day for a stalled reader to catch up.
	DefaultKeepChanges = 100_000
	// DefaultChangesLimit is the page size of Changes when none is given.
	DefaultChangesLimit = 1000
	// maxChangesLimit caps one page of Changes.
	maxChangesLimit = 10_000
)

// Changes returns the distinct ids of experiences changed (inserted,
// updated or deleted) by log rows with seq > after, in the order of their
// first change, and last, the seq of the last row read: pass it as after
// for the next page. limit bounds the rows read (so also the ids
// returned); 0 means DefaultChangesLimit, and it is capped at 10,000. With
// nothing new, ids is empty and last is after.
//
// The ids say only that something changed: read the records for their
// current state (a missing record was deleted). If rows after the cursor
// were pruned, Changes returns an error wrapping ErrChangesPruned.
func (s *SQLite) Changes(ctx context.Context, after int64, limit int) (ids []string, last int64, err error) {
	if err := s.check(); err != nil {
		return nil, 0, err
	}
	if limit <= 0 {
		limit = DefaultChangesLimit
	}
	limit = min(limit, maxChangesLimit)
	rows, err := s.r.QueryContext(ctx,
		`SELECT seq, experience_id FROM experience_changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	last = after
	seen := map[string]bool{}
	for rows.Next() {
		var seq int64
		var id string
		if err := rows.Scan(&seq, &id); err != nil {
			return nil, 0, fmt.Errorf("store: changes: %w", err)
		}
		// seq values are consecutive (AUTOINCREMENT, and a rolled-back
		// write rolls back its seq too), and pruning drops the oldest
		// rows: a first row past after+1 means the ones between are gone.
		if last == after && seq != after+1 {
			return nil, 0, fmt.Errorf("store: changes after %d, oldest kept is %d: %w", after, seq, ErrChangesPruned)
		}
		last = seq
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: changes: %w", err)
	}
	return ids, last, nil
}

// LastChange returns the seq of the newest change ever logged, 0 if none:
// a reader that has applied the state as of now continues from it. It
// reads SQLite's AUTOINCREMENT counter rather than the table, so it is
// right even when pruning has emptied the table.
func (s *SQLite) LastChange(ctx context.Context) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var seq int64
	err := s.r.QueryRowContext(ctx,
		`SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'experience_changes'), 0)`).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("store: last change: %w", err)
	}
	return seq, nil
}

// PruneChanges deletes all but the newest keepRows rows of the change log
// and returns how many it deleted. keepRows <= 0 means DefaultKeepChanges.
// It is cheap when there is nothing to drop, so pollers may call it often.
func (s *SQLite) PruneChanges(ctx context.Context, keepRows int) (int64, error) {
	if keepRows <= 0 {
		keepRows = DefaultKeepChanges
	}
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`DELETE FROM experience_changes WHERE seq <= (SELECT max(seq) FROM experience_changes) - ?`, keepRows)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune changes: %w", err)
	}
	return n, nil
}

// Change is one row of the change log.
type Change struct {
	Seq int64
	// ID is the experience the row logs a change of.
	ID string
	// At is when the change was made, to the millisecond, by SQLite's
	// clock.
	At time.Time
}

// ChangeAt returns the change log row seq, or an error wrapping
// ErrNotFound when the log no longer holds it (pruned, or never logged).
// The row's id and time together name one write to one file: a reader that
// kept them with its cursor (a saved index) can tell whether a store's log
// is the one it followed, rather than another file's, or a restored copy
// that went another way after the cursor.
func (s *SQLite) ChangeAt(ctx context.Context, seq int64) (Change, error) {
	if err := s.check(); err != nil {
		return Change{}, err
	}
	c := Change{Seq: seq}
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT experience_id, at FROM experience_changes WHERE seq = ?`, seq).Scan(&c.ID, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Change{}, fmt.Errorf("store: change %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return Change{}, fmt.Errorf("store: change %d: %w", seq, err)
	}
	c.At = fromNanos(at)
	return c, nil
}
