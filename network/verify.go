package network

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/store"
)

// verifyBatch bounds the experiences one Verify checks.
const verifyBatch = 64

// Verified is what Verify found.
type Verified struct {
	Checked int // the library's own code agreed with the majority's
	Refuted int // it did not: re-embedded with the library's own
}

// Verify checks experiences admitted by a majority code (see
// AdmittedByMajority) against the library's own code of their text, now
// that it can embed: one whose majority code is more than
// MaxCodeDistance bits from it was forged by the authors that agreed on
// it: the experience is re-embedded here, with the library's own code.
// While the library still cannot embed, it checks nothing and returns no
// error; it checks at most verifyBatch per call.
func (a *Admitter) Verify(ctx context.Context) (Verified, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var v Verified
	rows, err := a.State.Unverified(ctx, verifyBatch)
	if err != nil {
		return v, err
	}
	for _, u := range rows {
		e, err := a.Library.GetExperience(ctx, u.StoreID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if err := a.State.DropUnverified(ctx, u.StoreID); err != nil {
				return v, err
			}
			continue
		case err != nil:
			return v, err
		}
		local, ok, err := a.Library.Code(ctx, u.Space, e.Text)
		switch {
		case err != nil && a.cannotEmbed(err):
			return v, nil // still down: next time
		case err != nil:
			return v, err
		}
		if ok && e.Space == u.Space {
			c, derr := compress.Decode(e.Code)
			if derr != nil || compress.Hamming(&c, &local) > MaxCodeDistance {
				if err := a.refute(ctx, u, e, local); err != nil {
					return v, err
				}
				v.Refuted++
				continue
			}
		}
		// Agreed, or the library has moved to another space since, whose
		// move re-embedded the text.
		v.Checked++
		if err := a.State.DropUnverified(ctx, u.StoreID); err != nil {
			return v, err
		}
	}
	return v, nil
}

// refute replaces an experience whose majority code was forged with the
// library's own embedding of its text: the text was the authors', the
// code a lie about it.
func (a *Admitter) refute(ctx context.Context, u Unverified, e store.Experience, local compress.Code) error {
	coded, ok := a.Library.(CodedLibrary)
	if !ok {
		return errors.New("network: refute a majority code: the library takes no code")
	}
	if err := a.Library.Delete(ctx, u.StoreID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("network: refute a majority code: %w", err)
	}
	_, _, err := coded.AddCoded(ctx, store.Experience{Text: e.Text, Domain: e.Domain, Confidence: e.Confidence,
		Status: e.Status, SourceNode: e.SourceNode, CreatedAt: e.CreatedAt}, u.Space, local)
	if err != nil {
		return fmt.Errorf("network: re-embed a refuted majority code: %w", err)
	}
	return a.State.DropUnverified(ctx, u.StoreID)
}

// Unverified is an experience admitted by a majority code, not yet
// checked against the library's own.
type Unverified struct {
	StoreID string
	XID     [32]byte
	Space   string
}

// MarkUnverified records that storeID was admitted by a majority code in
// space.
func (s *State) MarkUnverified(ctx context.Context, storeID string, xid [32]byte, space string) error {
	if _, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO unverified (store_id, xid, space) VALUES (?, ?, ?)`,
		storeID, xid[:], space); err != nil {
		return fmt.Errorf("network: mark unverified: %w", err)
	}
	return nil
}

// Unverified returns up to limit experiences admitted by a majority code
// and not checked yet.
func (s *State) Unverified(ctx context.Context, limit int) ([]Unverified, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT store_id, xid, space FROM unverified ORDER BY store_id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("network: unverified: %w", err)
	}
	defer rows.Close()
	var out []Unverified
	for rows.Next() {
		var u Unverified
		var b []byte
		if err := rows.Scan(&u.StoreID, &b, &u.Space); err != nil {
			return nil, fmt.Errorf("network: unverified: %w", err)
		}
		copy(u.XID[:], b)
		out = append(out, u)
	}
	return out, rows.Err()
}

// DropUnverified forgets storeID's mark.
func (s *State) DropUnverified(ctx context.Context, storeID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM unverified WHERE store_id = ?`, storeID); err != nil {
		return fmt.Errorf("network: drop unverified: %w", err)
	}
	return nil
}

// verifyEvery runs Verify every Interval until ctx is done, counting and
// warning of the forged majority codes it finds.
func (s *Syncer) verifyEvery(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := s.cfg.Verify(ctx)
		if v.Refuted > 0 {
			s.mu.Lock()
			s.refuted += int64(v.Refuted)
			s.mu.Unlock()
			s.cfg.Logger.Warn("experiences admitted by a majority code whose code was no code of their text: re-embedded here",
				"network", s.cfg.Network, "refuted", v.Refuted)
		}
		if err != nil && ctx.Err() == nil && !failing {
			s.cfg.Logger.Warn("checking the experiences admitted by a majority code", "network", s.cfg.Network, "err", err.Error())
		}
		failing = err != nil
	}
}

// Refuted is how many majority codes Verify found forged since start.
func (s *Syncer) Refuted() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refuted
}
