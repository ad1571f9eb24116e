package store

import (
	"context"
	"database/sql"
	"fmt"
)

// PutVote records v, replacing an earlier vote by the same voter on the
// same experience through the same trace (a regrade). A zero At is set from
// the store's clock. It returns an error wrapping ErrNotFound if the
// experience is not stored, or ErrInvalid if the voter is empty.
func (s *SQLite) PutVote(ctx context.Context, v Vote) error {
	if err := checkField("voter", v.Voter, true); err != nil {
		return fmt.Errorf("store: put vote: %w", err)
	}
	if err := checkField("trace id", v.TraceID, false); err != nil {
		return fmt.Errorf("store: put vote: %w", err)
	}
	if err := checkField("experience id", v.ExperienceID, true); err != nil {
		return fmt.Errorf("store: put vote: %w", err)
	}
	if v.At.IsZero() {
		v.At = s.now()
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM experiences WHERE id = ?`, v.ExperienceID).Scan(&one)
		if err == sql.ErrNoRows {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO votes (experience_id, trace_id, voter, up, at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (experience_id, trace_id, voter) DO UPDATE SET up = excluded.up, at = excluded.at`,
			v.ExperienceID, v.TraceID, v.Voter, v.Up, toNanos(v.At))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: put vote: %w", err)
	}
	return nil
}

// Votes returns every vote on an experience, oldest first. An experience
// with no votes (or none stored) has none.
func (s *SQLite) Votes(ctx context.Context, experienceID string) ([]Vote, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT experience_id, trace_id, voter, up, at FROM votes
		WHERE experience_id = ? ORDER BY at, trace_id, voter`, experienceID)
	if err != nil {
		return nil, fmt.Errorf("store: votes: %w", err)
	}
	defer rows.Close()
	var out []Vote
	for rows.Next() {
		var v Vote
		var at int64
		if err := rows.Scan(&v.ExperienceID, &v.TraceID, &v.Voter, &v.Up, &at); err != nil {
			return nil, fmt.Errorf("store: votes: %w", err)
		}
		v.At = fromNanos(at)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: votes: %w", err)
	}
	return out, nil
}

// Tally counts the votes on an experience, one per voter: each voter's
// latest vote (by At, then trace id) counts once, whichever trace it came
// through.
func (s *SQLite) Tally(ctx context.Context, experienceID string) (Tally, error) {
	if err := s.check(); err != nil {
		return Tally{}, err
	}
	var t Tally
	err := s.r.QueryRowContext(ctx, `SELECT
			coalesce(sum(up = 1), 0), coalesce(sum(up = 0), 0)
		FROM (SELECT up, row_number() OVER (PARTITION BY voter ORDER BY at DESC, trace_id DESC) AS n
			FROM votes WHERE experience_id = ?)
		WHERE n = 1`, experienceID).Scan(&t.Up, &t.Down)
	if err != nil {
		return Tally{}, fmt.Errorf("store: tally: %w", err)
	}
	return t, nil
}
