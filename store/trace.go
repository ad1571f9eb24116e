package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// PutTrace stores t, replacing any trace with the same ID (so the proxy
// may record a trace before the answer is complete and again after). A zero
// CreatedAt is set from the store's clock.
//
// Retention is applied in the same transaction: traces older than
// Options.TraceMaxAge and, beyond Options.MaxTraces, the oldest ones are
// deleted. So the table never grows past its limits and no background
// goroutine is needed; PruneTraces exists for a store that sees no new
// traces for a long time.
func (s *SQLite) PutTrace(ctx context.Context, t Trace) error {
	if err := s.putTraces(ctx, []Trace{t}); err != nil {
		return fmt.Errorf("store: put trace: %w", err)
	}
	return nil
}

// PutTraces stores ts in one transaction, as PutTrace stores each: a later
// trace replaces an earlier one with the same ID, also within ts. Either
// all of them are stored or, on error, none.
//
// One commit for the whole batch is what lets a busy proxy store every
// trace: written one transaction each, traces are capped by the disk's
// syncs per second, not by the load.
//
// Traces are committed without a sync to disk of their own
// (synchronous=NORMAL for their transaction): a stored trace survives a
// process crash, and a power cut once any later write of the store's (an
// experience, a vote, feedback) or a checkpoint has synced the log. A
// trace is written after its answer was sent, and no one is told it is
// durable; the sync saved is most of a small batch's cost. Retention is applied
// once, after the batch, with the same result as after each trace: the
// newest Options.MaxTraces are kept, none older than Options.TraceMaxAge.
func (s *SQLite) PutTraces(ctx context.Context, ts []Trace) error {
	if err := s.putTraces(ctx, ts); err != nil {
		return fmt.Errorf("store: put traces: %w", err)
	}
	return nil
}

// traceRow is a trace as its columns store it.
type traceRow struct {
	t   Trace
	ids string
}

func (s *SQLite) putTraces(ctx context.Context, ts []Trace) error {
	if len(ts) == 0 {
		return nil
	}
	now := s.now()
	rows := make([]traceRow, len(ts))
	for i, t := range ts {
		if err := checkField("trace id", t.ID, true); err != nil {
			if len(ts) > 1 {
				return fmt.Errorf("trace %d: %w", i, err)
			}
			return err
		}
		// Most traces inject nothing: their list is the constant, not a
		// reflective encoding each.
		ids := "[]"
		if len(t.ExperienceIDs) > 0 {
			b, err := json.Marshal(t.ExperienceIDs)
			if err != nil {
				return err
			}
			ids = string(b)
		}
		if t.CreatedAt.IsZero() {
			t.CreatedAt = now
		}
		rows[i] = traceRow{t: t, ids: ids}
	}
	return s.writeTxUnsynced(ctx, func(tx *sql.Tx) error {
		run, one := tx.StmtContext(ctx, s.putTraceRun), tx.StmtContext(ctx, s.putTrace)
		defer run.Close()
		defer one.Close()
		// The transaction holds the write lock, so a row waits for nothing:
		// it runs without ctx's deadline, for which the driver starts a
		// watching goroutine per statement (half the cost of a row). The
		// deadline still bounds the batch, checked between statements.
		rowCtx := context.WithoutCancel(ctx)
		args := make([]any, 0, traceColumns*traceRun)
		for len(rows) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			// traceRun rows per statement while there are as many: a
			// statement's own cost (database/sql, the driver's step and
			// reset) is paid once for them. Rows go in in order, so a later
			// trace still replaces an earlier one with its ID.
			stmt, n := run, traceRun
			if len(rows) < traceRun {
				stmt, n = one, 1
			}
			args = args[:0]
			for _, r := range rows[:n] {
				t := r.t
				args = append(args, t.ID, t.Query, t.Domain, r.ids, t.Model, t.Answer, toNanos(t.CreatedAt))
			}
			if _, err := stmt.ExecContext(rowCtx, args...); err != nil {
				return err
			}
			rows = rows[n:]
		}
		s.traces.Add(int64(len(ts))) // replaced ones over-count: a walk too many, never too few
		_, err := s.prune(ctx, tx, now)
		return err
	})
}

// traceRun is how many traces one multi-row insert takes; traceColumns is
// a trace's columns.
const (
	traceRun     = 16
	traceColumns = 7
)

// insertTraces is the statement inserting n traces.
func insertTraces(n int) string {
	return `INSERT OR REPLACE INTO traces (id, query, domain, experience_ids, model, answer, created_at) VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?),", n), ",")
}

// GetTrace returns the trace with the given id, or an error wrapping
// ErrNotFound (also for a trace removed by retention).
func (s *SQLite) GetTrace(ctx context.Context, id string) (Trace, error) {
	if err := s.check(); err != nil {
		return Trace{}, err
	}
	var (
		t       Trace
		ids     string
		created int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT id, query, domain, experience_ids, model, answer, created_at
		FROM traces WHERE id = ?`, id).Scan(&t.ID, &t.Query, &t.Domain, &ids, &t.Model, &t.Answer, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Trace{}, fmt.Errorf("store: get trace: %w", ErrNotFound)
	}
	if err != nil {
		return Trace{}, fmt.Errorf("store: get trace: %w", err)
	}
	if err := json.Unmarshal([]byte(ids), &t.ExperienceIDs); err != nil {
		return Trace{}, fmt.Errorf("store: get trace: experience ids: %w", err)
	}
	t.CreatedAt = fromNanos(created)
	return t, nil
}

// PruneTraces applies the retention limits as of now and returns how many
// traces it deleted.
func (s *SQLite) PruneTraces(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = s.prune(ctx, tx, now)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune traces: %w", err)
	}
	return n, nil
}

func (s *SQLite) prune(ctx context.Context, tx *sql.Tx, now time.Time) (int, error) {
	var total int64
	if age := s.opts.TraceMaxAge; age > 0 {
		res, err := tx.ExecContext(ctx, `DELETE FROM traces WHERE created_at < ?`, toNanos(now.Add(-age)))
		if err != nil {
			return 0, err
		}
		n, _ := res.RowsAffected()
		total += n
		// Exact for the rows deleted, so no walk to count them: once the
		// oldest trace is older than the limit, every batch deletes some,
		// and counting the table each time cost more than the batch.
		s.traces.Add(-n)
	}
	if max := s.opts.MaxTraces; max > 0 && s.traces.Load() > int64(max) {
		// Counted exactly: the estimate over-counts replaced traces.
		var c int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM traces`).Scan(&c); err != nil {
			return 0, err
		}
		// Keep the newest traces (ties broken by rowid, i.e. insertion):
		// max of them, less a twentieth, so that the count, which walks the
		// table, is paid once per max/20 inserts, not on every one (paid
		// every hundredth, it was a fifth of the cost of storing a trace).
		// The oldest are deleted walking from the old end of the index, so
		// the delete costs what it deletes, not the table.
		if keep := int64(max - max/20); c > int64(max) {
			res, err := tx.ExecContext(ctx, `DELETE FROM traces WHERE rowid IN (
				SELECT rowid FROM traces ORDER BY created_at, rowid LIMIT ?)`, c-keep)
			if err != nil {
				return 0, err
			}
			n, _ := res.RowsAffected()
			total += n
			c -= n
		}
		s.traces.Store(c)
	}
	return int(total), nil
}

// CountTraces returns the number of stored traces.
func (s *SQLite) CountTraces(ctx context.Context) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM traces`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count traces: %w", err)
	}
	return n, nil
}

// MaxTraceList bounds the traces one ListTraces call returns.
const MaxTraceList = 200

// TraceListOptions select a page of traces, newest first.
type TraceListOptions struct {
	// Limit is the page size, at most MaxTraceList. Zero: 50.
	Limit int
	// Before is the cursor ListTraces returned with the previous page;
	// empty starts at the newest trace.
	Before string
}

// ListedTrace is a trace with a summary of the feedback it got.
type ListedTrace struct {
	Trace
	// Grades is how many voters graded it; Grade is their mean grade
	// (meaningful only when Grades > 0).
	Grades int
	Grade  float64
}

// ListTraces returns a page of traces, newest first (ties by insertion,
// latest first), each with its feedback summary, and the cursor of the
// next page ("" when this was the last). The cursor is the position of
// the page's last trace, so a trace stored meanwhile does not shift later
// pages. A malformed cursor is an error wrapping ErrInvalid.
func (s *SQLite) ListTraces(ctx context.Context, o TraceListOptions) ([]ListedTrace, string, error) {
	if err := s.check(); err != nil {
		return nil, "", err
	}
	limit := o.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, MaxTraceList)
	// With no cursor, start past the largest possible position.
	created, rowid := int64(math.MaxInt64), int64(math.MaxInt64)
	if o.Before != "" {
		if _, err := fmt.Sscanf(o.Before, "%d.%d", &created, &rowid); err != nil || fmt.Sprintf("%d.%d", created, rowid) != o.Before {
			return nil, "", fmt.Errorf("store: list traces: %w: bad cursor", ErrInvalid)
		}
	}
	rows, err := s.r.QueryContext(ctx, `SELECT t.rowid, t.id, t.query, t.domain, t.experience_ids, t.model, t.answer, t.created_at,
			(SELECT count(*) FROM feedback f WHERE f.trace_id = t.id),
			(SELECT coalesce(avg(f.grade), 0) FROM feedback f WHERE f.trace_id = t.id)
		FROM traces t
		WHERE t.created_at < ? OR (t.created_at = ? AND t.rowid < ?)
		ORDER BY t.created_at DESC, t.rowid DESC LIMIT ?`, created, created, rowid, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("store: list traces: %w", err)
	}
	defer rows.Close()
	var out []ListedTrace
	var last [2]int64
	for rows.Next() {
		if len(out) == limit {
			return out, fmt.Sprintf("%d.%d", last[0], last[1]), nil // one more exists
		}
		var lt ListedTrace
		var ids string
		if err := rows.Scan(&last[1], &lt.ID, &lt.Query, &lt.Domain, &ids, &lt.Model, &lt.Answer, &last[0], &lt.Grades, &lt.Grade); err != nil {
			return nil, "", fmt.Errorf("store: list traces: %w", err)
		}
		if err := json.Unmarshal([]byte(ids), &lt.ExperienceIDs); err != nil {
			return nil, "", fmt.Errorf("store: list traces: experience ids: %w", err)
		}
		lt.CreatedAt = fromNanos(last[0])
		out = append(out, lt)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list traces: %w", err)
	}
	return out, "", nil
}
