package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Response is a Responses API response that dso answered itself, kept so
// that a later request can continue its conversation
// (previous_response_id) and a client can read it again.
type Response struct {
	ID        string
	Model     string
	Object    []byte // the response object as it was returned (JSON)
	Input     []byte // this request's input items (a JSON array)
	History   []byte // the conversation to continue: every item before, the input, the output (a JSON array)
	CreatedAt time.Time
}

// maxResponseBytes caps one stored response's three parts together.
const maxResponseBytes = 64 << 20

func checkResponse(r Response) error {
	if err := checkField("response id", r.ID, true); err != nil {
		return err
	}
	if n := len(r.Object) + len(r.Input) + len(r.History); n > maxResponseBytes {
		return fmt.Errorf("response %s is %d bytes, over %d", r.ID, n, maxResponseBytes)
	}
	return nil
}

// PutResponse stores r (replacing one with its id), durably: it is
// acknowledged only once a later request may continue from it. Retention
// is applied in the same transaction: the newest Options.MaxResponses are
// kept, none older than Options.ResponseMaxAge.
func (s *SQLite) PutResponse(ctx context.Context, r Response) error {
	if err := checkResponse(r); err != nil {
		return fmt.Errorf("store: put response: %w", err)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO responses (id, model, object, input, history, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			r.ID, r.Model, r.Object, r.Input, r.History, toNanos(r.CreatedAt)); err != nil {
			return err
		}
		return s.pruneResponses(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("store: put response: %w", err)
	}
	return nil
}

func (s *SQLite) pruneResponses(ctx context.Context, tx *sql.Tx) error {
	if age := s.opts.ResponseMaxAge; age > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM responses WHERE created_at < ?`, toNanos(s.now().Add(-age))); err != nil {
			return err
		}
	}
	max := s.opts.MaxResponses
	if max <= 0 {
		return nil
	}
	// Counted once, then estimated (each put may add one); the count, a
	// walk of the table, is paid again only once it may be over, and a
	// twentieth is deleted then, so it is paid once per max/20 puts.
	if !s.responsesCounted {
		var c int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM responses`).Scan(&c); err != nil {
			return err
		}
		s.responsesCounted = true
		s.responses = c
	}
	if s.responses++; s.responses <= int64(max) {
		return nil
	}
	var c int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM responses`).Scan(&c); err != nil {
		return err
	}
	if keep := int64(max - max/20); c > int64(max) {
		res, err := tx.ExecContext(ctx, `DELETE FROM responses WHERE id IN (
			SELECT id FROM responses ORDER BY created_at, id LIMIT ?)`, c-keep)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		c -= n
	}
	s.responses = c
	return nil
}

// GetResponse returns the response with id, or ErrNotFound (also for one
// past ResponseMaxAge that retention has not deleted yet).
func (s *SQLite) GetResponse(ctx context.Context, id string) (Response, error) {
	if err := s.check(); err != nil {
		return Response{}, err
	}
	r := Response{ID: id}
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT model, object, input, history, created_at FROM responses WHERE id = ?`, id).
		Scan(&r.Model, &r.Object, &r.Input, &r.History, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Response{}, ErrNotFound
	}
	if err != nil {
		return Response{}, fmt.Errorf("store: get response: %w", err)
	}
	r.CreatedAt = fromNanos(created)
	if age := s.opts.ResponseMaxAge; age > 0 && r.CreatedAt.Before(s.now().Add(-age)) {
		return Response{}, ErrNotFound
	}
	return r, nil
}

// DeleteResponse deletes the response with id, or returns ErrNotFound.
func (s *SQLite) DeleteResponse(ctx context.Context, id string) error {
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM responses WHERE id = ?`, id)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete response: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
