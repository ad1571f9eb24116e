package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// FeedbackState is where a feedback record is in the distillation queue.
type FeedbackState string

// Feedback states.
const (
	FeedbackPending FeedbackState = "pending" // waiting to be distilled
	FeedbackDone    FeedbackState = "done"    // distilled into the library
	FeedbackSkipped FeedbackState = "skipped" // nothing to learn from it
	FeedbackFailed  FeedbackState = "failed"  // gave up after retries
)

// Feedback is one voter's grade of one traced answer. It doubles as the
// durable distillation queue: a pending record survives restarts until a
// worker marks it.
type Feedback struct {
	TraceID    string
	Voter      string
	Grade      float64 // in [0, 1]
	Comment    string
	Correction string
	State      FeedbackState
	Attempts   int
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Validate returns an error wrapping ErrInvalid if RecordFeedback would
// refuse fb for its fields: a missing trace id or voter, a field too long
// or not UTF-8, a grade outside [0, 1]. Callers that record feedback later
// check it up front with this.
func (fb Feedback) Validate() error {
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"trace id", fb.TraceID, true}, {"voter", fb.Voter, true}, {"comment", fb.Comment, false}, {"correction", fb.Correction, false}} {
		if err := checkField(f.name, f.v, f.required); err != nil {
			return err
		}
	}
	if !(fb.Grade >= 0 && fb.Grade <= 1) {
		return fmt.Errorf("%w: grade %v is outside [0, 1]", ErrInvalid, fb.Grade)
	}
	return nil
}

// RecordFeedback stores fb as pending (a regrade by the same voter replaces
// the earlier grade and queues it again) and, in the same transaction, a
// vote up or down by fb.Voter through fb.TraceID on each of experienceIDs
// that is still stored. It returns once all of it is committed.
func (s *SQLite) RecordFeedback(ctx context.Context, fb Feedback, up bool, experienceIDs []string) error {
	if err := fb.Validate(); err != nil {
		return fmt.Errorf("store: record feedback: %w", err)
	}
	now := toNanos(s.now())
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO feedback (trace_id, voter, grade, comment, correction, state, attempts, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)
			ON CONFLICT (trace_id, voter) DO UPDATE SET grade = excluded.grade, comment = excluded.comment,
				correction = excluded.correction, state = 'pending', attempts = 0, updated_at = excluded.updated_at`,
			fb.TraceID, fb.Voter, fb.Grade, fb.Comment, fb.Correction, now, now)
		if err != nil {
			return err
		}
		for _, id := range experienceIDs {
			_, err := tx.ExecContext(ctx, `INSERT INTO votes (experience_id, trace_id, voter, up, at)
				SELECT id, ?, ?, ?, ? FROM experiences WHERE id = ?
				ON CONFLICT (experience_id, trace_id, voter) DO UPDATE SET up = excluded.up, at = excluded.at`,
				fb.TraceID, fb.Voter, up, now, id)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// PendingFeedback returns up to limit pending records, oldest first.
func (s *SQLite) PendingFeedback(ctx context.Context, limit int) ([]Feedback, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 16
	}
	rows, err := s.r.QueryContext(ctx, `SELECT trace_id, voter, grade, comment, correction, state, attempts, created_at, updated_at
		FROM feedback WHERE state = 'pending' ORDER BY updated_at LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: pending feedback: %w", err)
	}
	defer rows.Close()
	var out []Feedback
	for rows.Next() {
		var f Feedback
		var state string
		var c, u int64
		if err := rows.Scan(&f.TraceID, &f.Voter, &f.Grade, &f.Comment, &f.Correction, &state, &f.Attempts, &c, &u); err != nil {
			return nil, fmt.Errorf("store: pending feedback: %w", err)
		}
		f.State, f.CreatedAt, f.UpdatedAt = FeedbackState(state), fromNanos(c), fromNanos(u)
		out = append(out, f)
	}
	return out, rows.Err()
}

// MarkFeedback sets a record's state and counts an attempt. A record that
// was regraded since it was read (updatedAt differs) is left pending: the
// new grade still has to be distilled.
func (s *SQLite) MarkFeedback(ctx context.Context, traceID, voter string, updatedAt time.Time, state FeedbackState) error {
	switch state {
	case FeedbackPending, FeedbackDone, FeedbackSkipped, FeedbackFailed:
	default:
		return fmt.Errorf("store: mark feedback: %w: state %q", ErrInvalid, state)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE feedback SET state = ?, attempts = attempts + 1
			WHERE trace_id = ? AND voter = ? AND updated_at = ?`, string(state), traceID, voter, toNanos(updatedAt))
		return err
	})
}
