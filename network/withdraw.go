package network

import (
	"context"
	"errors"
	"fmt"

	"github.com/dso-proxy/dso/store"
)

// Withdrawn is the outcome of a record taken back from the library
// after its author lost its standing (its log forked, or no one with
// standing vouches for it any more), counted on the author's log.
const Withdrawn = "withdrawn"

// withdrawBatch is how many of an author's endorsements Withdraw takes
// back per read.
const withdrawBatch = 256

// Withdraw takes back what the library holds on author's word (an
// AuthorID), once it has no standing: its endorsements no longer count.
// An experience that no author with standing endorses leaves the library
// for the quarantine, under each author that published it (shown, never
// injected, and admitted again like any quarantined record should one of
// them gain standing); one that others with standing endorse stays, at
// the aggregate of their confidences. A lesson the node had itself keeps
// its own. It returns how many experiences left the library.
func (a *Admitter) Withdraw(ctx context.Context, author string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for {
		xids, err := a.State.EndorsedBy(ctx, author, withdrawBatch)
		if err != nil || len(xids) == 0 {
			return n, err
		}
		for _, xid := range xids {
			// Each step drops author's endorsement of xid, so the loop
			// ends.
			out, err := a.withdraw(ctx, xid, author)
			if err != nil {
				return n, fmt.Errorf("network: withdraw %s: %w", author, err)
			}
			if out {
				n++
			}
		}
	}
}

// withdraw drops author's endorsement of xid and settles what the others'
// leave; true when the experience left the library.
func (a *Admitter) withdraw(ctx context.Context, xid [32]byte, author string) (bool, error) {
	all, err := a.State.Endorsements(ctx, xid)
	if err != nil {
		return false, err
	}
	var standing []Endorsement
	for _, e := range all {
		if e.Author == author {
			continue
		}
		if w := a.weight(e.Author); w > 0 {
			standing = append(standing, Endorsement{Confidence: e.Confidence, Weight: w})
		}
	}
	sid, err := a.State.StoreID(ctx, xid)
	if err != nil {
		return false, err
	}
	theirs := false
	if sid != "" {
		if theirs, err = a.State.Admitted(ctx, sid); err != nil {
			return false, err
		}
	}
	if len(standing) > 0 || !theirs {
		// Others vouch for it, or it was never the network's to take
		// back (the node's own, or waiting for a majority code).
		if theirs {
			if err := a.reweigh(ctx, sid, standing); err != nil {
				return false, err
			}
		}
		return false, a.State.Unendorse(ctx, xid, author)
	}
	e, err := a.Library.GetExperience(ctx, sid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deleted here meanwhile: nothing to take back.
		return false, errors.Join(a.State.Unmark(ctx, sid), a.State.Unendorse(ctx, xid, ""))
	case err != nil:
		return false, err
	}
	for _, by := range all {
		err := a.State.Withhold(ctx, by.Author, Experience{Network: a.Network, Domain: e.Domain, Text: e.Text,
			Confidence: by.Confidence, Time: e.CreatedAt})
		if err != nil {
			return false, err
		}
	}
	if err := a.Library.Delete(ctx, sid); err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	// Should it come back, votes the network kept on it apply afresh.
	if _, err := a.State.SetRetired(ctx, xid, false); err != nil {
		return false, err
	}
	return true, errors.Join(a.State.Unmark(ctx, sid), a.State.Forget(ctx, xid), a.State.Unendorse(ctx, xid, ""))
}

// reweigh sets the admitted experience sid to the aggregate of the
// endorsements left.
func (a *Admitter) reweigh(ctx context.Context, sid string, es []Endorsement) error {
	conf, err := Aggregate(a.Aggregate, es)
	if err != nil {
		return err
	}
	_, err = a.Library.Update(ctx, sid, store.Update{Confidence: &conf})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// weight is author's trust weight now; 1 without a Weight.
func (a *Admitter) weight(author string) float64 {
	if a.Weight == nil {
		return 1
	}
	return a.Weight(author)
}

// EndorsedBy returns up to limit experiences author (an AuthorID)
// endorses.
func (s *State) EndorsedBy(ctx context.Context, author string, limit int) ([][32]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT xid FROM endorsements WHERE author = ? LIMIT ?`, author, limit)
	if err != nil {
		return nil, fmt.Errorf("network: endorsed by: %w", err)
	}
	defer rows.Close()
	var out [][32]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("network: endorsed by: %w", err)
		}
		var x [32]byte
		copy(x[:], b)
		out = append(out, x)
	}
	return out, rows.Err()
}

// Endorsers returns every author (an AuthorID) that endorses an
// experience.
func (s *State) Endorsers(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT author FROM endorsements ORDER BY author`)
	if err != nil {
		return nil, fmt.Errorf("network: endorsers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("network: endorsers: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Unendorse drops author's endorsement of xid; every author's for "".
func (s *State) Unendorse(ctx context.Context, xid [32]byte, author string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM endorsements WHERE xid = ? AND (? = '' OR author = ?)`, xid[:], author, author)
	if err != nil {
		return fmt.Errorf("network: unendorse: %w", err)
	}
	return nil
}

// Forget undoes Know: the store no longer holds xid.
func (s *State) Forget(ctx context.Context, xid [32]byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM known WHERE xid = ?`, xid[:]); err != nil {
		return fmt.Errorf("network: forget: %w", err)
	}
	return nil
}

// Forked returns the keys of the logs caught showing two histories.
func (s *State) Forked(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT peer FROM forks ORDER BY peer`)
	if err != nil {
		return nil, fmt.Errorf("network: forked: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("network: forked: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Withhold quarantines author's record of e past the quarantine's caps:
// it was admitted, and leaves the library for it, so the library's own
// bounds held it; refusing it would lose it for good.
func (s *State) Withhold(ctx context.Context, author string, e Experience) error {
	xid := ExperienceID(e.Network, e.Domain, e.Text)
	_, err := s.db.ExecContext(ctx, `INSERT INTO quarantine (xid, author, domain, text, confidence, at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (xid, author) DO UPDATE SET confidence = excluded.confidence, at = excluded.at`,
		xid[:], author, e.Domain, e.Text, e.Confidence, e.Time.UnixMilli())
	if err != nil {
		return fmt.Errorf("network: withhold: %w", err)
	}
	return nil
}
