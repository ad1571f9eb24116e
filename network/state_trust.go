package network

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// voteSchema is what a node keeps of the vouches and votes in the logs it
// follows, and which of its experiences the network retired.
const voteSchema = `
CREATE TABLE IF NOT EXISTS vouches (voucher TEXT NOT NULL, key TEXT NOT NULL, revoked INTEGER NOT NULL, at INTEGER NOT NULL,
	PRIMARY KEY (voucher, key));
CREATE TABLE IF NOT EXISTS votes (xid BLOB NOT NULL, voter TEXT NOT NULL, grade INTEGER NOT NULL, at INTEGER NOT NULL,
	PRIMARY KEY (xid, voter));
CREATE INDEX IF NOT EXISTS votes_by_voter ON votes (voter);
CREATE TABLE IF NOT EXISTS known (xid BLOB PRIMARY KEY, store_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS known_by_store_id ON known (store_id);
CREATE TABLE IF NOT EXISTS net_retired (xid BLOB PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS codes (xid BLOB NOT NULL, author TEXT NOT NULL, space TEXT NOT NULL, code BLOB NOT NULL,
	PRIMARY KEY (xid, author));
`

// Bounds on what one followed log can make a node keep.
const (
	// MaxVouchRows bounds the vouches kept per voucher.
	MaxVouchRows = 1024
	// MaxVotesPerVoter bounds the votes kept per voter.
	MaxVotesPerVoter = 100000
)

// Errors of a full table: the record is refused and counted.
var (
	ErrVouchesFull = errors.New("network: voucher has too many vouches")
	ErrVotesFull   = errors.New("network: voter has too many votes")
)

// SaveVouch records voucher's vouch; an older one than what is kept for
// the same key changes nothing. It reports whether anything changed.
func (s *State) SaveVouch(ctx context.Context, voucher string, v Vouch) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM vouches WHERE voucher = ?`, voucher).Scan(&n); err != nil {
		return false, fmt.Errorf("network: vouch: %w", err)
	}
	if n >= MaxVouchRows {
		var one int
		err := s.db.QueryRowContext(ctx, `SELECT 1 FROM vouches WHERE voucher = ? AND key = ?`, voucher, v.Key).Scan(&one)
		if err != nil {
			return false, ErrVouchesFull
		}
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO vouches (voucher, key, revoked, at) VALUES (?, ?, ?, ?)
		ON CONFLICT (voucher, key) DO UPDATE SET revoked = excluded.revoked, at = excluded.at
		WHERE excluded.at >= vouches.at AND excluded.revoked != vouches.revoked`,
		voucher, v.Key, v.Revoked, v.Time.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("network: vouch: %w", err)
	}
	k, err := res.RowsAffected()
	return k > 0, err
}

// Vouches returns every voucher's standing vouches, in the order each
// vouched.
func (s *State) Vouches(ctx context.Context) (map[string][]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT voucher, key FROM vouches WHERE revoked = 0 ORDER BY voucher, at, key`)
	if err != nil {
		return nil, fmt.Errorf("network: vouches: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var voucher, key string
		if err := rows.Scan(&voucher, &key); err != nil {
			return nil, fmt.Errorf("network: vouches: %w", err)
		}
		out[voucher] = append(out[voucher], key)
	}
	return out, rows.Err()
}

// SaveVote records voter's vote; an older one than what is kept changes
// nothing. It reports whether anything changed.
func (s *State) SaveVote(ctx context.Context, voter string, v Vote) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM votes WHERE voter = ?`, voter).Scan(&n); err != nil {
		return false, fmt.Errorf("network: vote: %w", err)
	}
	if n >= MaxVotesPerVoter {
		var one int
		if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM votes WHERE xid = ? AND voter = ?`, v.Experience[:], voter).Scan(&one); err != nil {
			return false, ErrVotesFull
		}
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO votes (xid, voter, grade, at) VALUES (?, ?, ?, ?)
		ON CONFLICT (xid, voter) DO UPDATE SET grade = excluded.grade, at = excluded.at
		WHERE excluded.at >= votes.at AND excluded.grade != votes.grade`,
		v.Experience[:], voter, int(v.Grade), v.Time.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("network: vote: %w", err)
	}
	k, err := res.RowsAffected()
	return k > 0, err
}

// Ballot is one voter's latest grade of an experience.
type Ballot struct {
	Voter string
	Grade int8
}

// Ballots returns the latest vote of every voter on xid.
func (s *State) Ballots(ctx context.Context, xid [32]byte) ([]Ballot, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT voter, grade FROM votes WHERE xid = ? ORDER BY voter`, xid[:])
	if err != nil {
		return nil, fmt.Errorf("network: ballots: %w", err)
	}
	defer rows.Close()
	var out []Ballot
	for rows.Next() {
		var b Ballot
		var g int
		if err := rows.Scan(&b.Voter, &g); err != nil {
			return nil, fmt.Errorf("network: ballots: %w", err)
		}
		b.Grade = int8(g)
		out = append(out, b)
	}
	return out, rows.Err()
}

// VotedOn returns every experience with votes, after the id after, up to
// limit of them, in id order: for going over them all in pages.
func (s *State) VotedOn(ctx context.Context, after []byte, limit int) ([][32]byte, error) {
	if after == nil {
		after = []byte{}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT xid FROM votes WHERE xid > ? ORDER BY xid LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("network: voted on: %w", err)
	}
	defer rows.Close()
	var out [][32]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("network: voted on: %w", err)
		}
		var x [32]byte
		copy(x[:], b)
		out = append(out, x)
	}
	return out, rows.Err()
}

// Know records that the store holds the network's experience xid as
// storeID: votes name experiences by network id only.
func (s *State) Know(ctx context.Context, xid [32]byte, storeID string) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO known (xid, store_id) VALUES (?, ?)
		ON CONFLICT (xid) DO UPDATE SET store_id = excluded.store_id`, xid[:], storeID); err != nil {
		return fmt.Errorf("network: know: %w", err)
	}
	return nil
}

// StoreID returns the store's id of the network's experience xid; "" when
// the node does not hold it.
func (s *State) StoreID(ctx context.Context, xid [32]byte) (string, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT store_id FROM known WHERE xid = ?`, xid[:]).Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("network: store id: %w", err)
	}
	return id, nil
}

// KnownAs returns the network's id of the store's experience storeID;
// false when the node has not noted one.
func (s *State) KnownAs(ctx context.Context, storeID string) ([32]byte, bool, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT xid FROM known WHERE store_id = ? LIMIT 1`, storeID).Scan(&b)
	var xid [32]byte
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return xid, false, nil
	case err != nil:
		return xid, false, fmt.Errorf("network: known as: %w", err)
	}
	copy(xid[:], b)
	return xid, true, nil
}

// SetRetired records whether the network's votes retired xid here; it
// reports whether that changed.
func (s *State) SetRetired(ctx context.Context, xid [32]byte, retired bool) (bool, error) {
	q := `DELETE FROM net_retired WHERE xid = ?`
	args := []any{xid[:]}
	if retired {
		q = `INSERT OR IGNORE INTO net_retired (xid, at) VALUES (?, ?)`
		args = append(args, time.Now().UnixMilli())
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("network: retired: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// Retired reports whether the network's votes retired xid here.
func (s *State) Retired(ctx context.Context, xid [32]byte) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM net_retired WHERE xid = ?`, xid[:]).Scan(&n); err != nil {
		return false, fmt.Errorf("network: retired: %w", err)
	}
	return n > 0, nil
}

// CountRetired is how many experiences the network's votes retired here.
func (s *State) CountRetired(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM net_retired`).Scan(&n); err != nil {
		return 0, fmt.Errorf("network: retired: %w", err)
	}
	return n, nil
}

// SaveCode keeps author's code of xid in space, for a majority code.
func (s *State) SaveCode(ctx context.Context, xid [32]byte, author, space string, code []byte) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO codes (xid, author, space, code) VALUES (?, ?, ?, ?)
		ON CONFLICT (xid, author) DO UPDATE SET space = excluded.space, code = excluded.code`, xid[:], author, space, code); err != nil {
		return fmt.Errorf("network: save code: %w", err)
	}
	return nil
}

// AuthorCode is one author's code of an experience.
type AuthorCode struct {
	Author string // an AuthorID
	Code   []byte
}

// Codes returns the codes of xid in space kept from distinct authors, in
// the order of their AuthorIDs.
func (s *State) Codes(ctx context.Context, xid [32]byte, space string) ([]AuthorCode, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT author, code FROM codes WHERE xid = ? AND space = ? ORDER BY author`, xid[:], space)
	if err != nil {
		return nil, fmt.Errorf("network: codes: %w", err)
	}
	defer rows.Close()
	var out []AuthorCode
	for rows.Next() {
		var ac AuthorCode
		if err := rows.Scan(&ac.Author, &ac.Code); err != nil {
			return nil, fmt.Errorf("network: codes: %w", err)
		}
		out = append(out, ac)
	}
	return out, rows.Err()
}

// DropCodes forgets the codes kept of xid, once it is admitted.
func (s *State) DropCodes(ctx context.Context, xid [32]byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM codes WHERE xid = ?`, xid[:]); err != nil {
		return fmt.Errorf("network: drop codes: %w", err)
	}
	return nil
}
