package network

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MaxQuarantine bounds the quarantined records a node keeps per network:
// records from nodes without standing cost a stranger nothing to write.
const MaxQuarantine = 10000

// MaxQuarantinePerAuthor is one author's share of MaxQuarantine, so that
// no one author fills it for the others.
const MaxQuarantinePerAuthor = MaxQuarantine / 10

// stateSchema is what a node keeps of the logs it follows, in the file of
// its own log beside the tree's tables: one file per network to back up.
const stateSchema = `
CREATE TABLE IF NOT EXISTS follow_state (peer TEXT PRIMARY KEY, checkpoint BLOB NOT NULL, next INTEGER NOT NULL, rejected TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forks (peer TEXT PRIMARY KEY, old BLOB NOT NULL, new BLOB NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS endorsements (xid BLOB NOT NULL, author TEXT NOT NULL, confidence REAL NOT NULL, PRIMARY KEY (xid, author));
CREATE INDEX IF NOT EXISTS endorsements_by_author ON endorsements (author);
CREATE TABLE IF NOT EXISTS admitted (store_id TEXT PRIMARY KEY, xid BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS unverified (store_id TEXT PRIMARY KEY, xid BLOB NOT NULL, space TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (xid BLOB NOT NULL, author TEXT NOT NULL, domain TEXT NOT NULL, text TEXT NOT NULL,
	confidence REAL NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (xid, author));
CREATE INDEX IF NOT EXISTS quarantine_by_author ON quarantine (author);
`

// State is what a node remembers of the logs it follows on one network:
// the last checkpoint accepted from each (so that a restart resumes, and a
// peer that later shows a smaller or other tree is caught), evidence of
// forks, which authors published each experience, and the records held
// in quarantine. Safe for concurrent use.
type State struct {
	db *sql.DB
	// maxQuarantine and maxPerAuthor are MaxQuarantine and
	// MaxQuarantinePerAuthor; tests lower them.
	maxQuarantine, maxPerAuthor int
}

// OpenState opens or creates the state kept in the SQLite file at path
// (the node's log file of the network).
func OpenState(ctx context.Context, path string) (*State, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("network: open state: %w", err)
	}
	db, err := sql.Open("sqlite", stateDSN(path))
	if err != nil {
		return nil, fmt.Errorf("network: open state: %w", err)
	}
	if _, err := db.ExecContext(ctx, stateSchema+voteSchema+witnessSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("network: open state: schema: %w", err)
	}
	return &State{db: db, maxQuarantine: MaxQuarantine, maxPerAuthor: MaxQuarantinePerAuthor}, nil
}

// Close closes the file.
func (s *State) Close() error { return s.db.Close() }

// stateDSN is treeDSN with synchronous=NORMAL on the state's own
// connections: what a node keeps of the logs it follows is re-derived
// from them. Should a power cut lose the last writes, the follower
// resumes from the last synced checkpoint and is handed those records
// again, whose admission is idempotent (an endorsement, a vote, a vouch
// replace their own earlier row; the library skips a duplicate). A dso
// crash loses nothing (WAL); the node's own log, in the same file, keeps
// synchronous=FULL on its connections, since a checkpoint it has signed
// and served must never be signed differently.
func stateDSN(path string) string {
	return strings.Replace(treeDSN(path), "synchronous%28FULL%29", "synchronous%28NORMAL%29", 1)
}

// Follow returns what was accepted from the log peer names (its verifier
// key), and the fork it showed, if any; zero values for a new peer.
func (s *State) Follow(ctx context.Context, peer string) (FollowState, *Fork, error) {
	var st FollowState
	var rejected string
	err := s.db.QueryRowContext(ctx, `SELECT checkpoint, next, rejected FROM follow_state WHERE peer = ?`, peer).
		Scan(&st.Checkpoint, &st.Next, &rejected)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return FollowState{}, nil, fmt.Errorf("network: follow state: %w", err)
	default:
		if err := json.Unmarshal([]byte(rejected), &st.Rejected); err != nil {
			return FollowState{}, nil, fmt.Errorf("network: follow state: rejected: %w", err)
		}
	}
	var f Fork
	err = s.db.QueryRowContext(ctx, `SELECT old, new FROM forks WHERE peer = ?`, peer).Scan(&f.Old, &f.New)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return st, nil, nil
	case err != nil:
		return FollowState{}, nil, fmt.Errorf("network: fork: %w", err)
	}
	return st, &f, nil
}

// SaveFollow stores what was accepted from peer's log.
func (s *State) SaveFollow(ctx context.Context, peer string, st FollowState) error {
	if st.Checkpoint == nil {
		return nil
	}
	rejected, err := json.Marshal(st.Rejected)
	if err != nil {
		return fmt.Errorf("network: save follow state: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO follow_state (peer, checkpoint, next, rejected) VALUES (?, ?, ?, ?)
		ON CONFLICT (peer) DO UPDATE SET checkpoint = excluded.checkpoint, next = excluded.next, rejected = excluded.rejected`,
		peer, st.Checkpoint, st.Next, string(rejected))
	if err != nil {
		return fmt.Errorf("network: save follow state: %w", err)
	}
	return nil
}

// SaveFork keeps the evidence that peer's log showed two histories; the
// first evidence stays.
func (s *State) SaveFork(ctx context.Context, peer string, f Fork) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO forks (peer, old, new, at) VALUES (?, ?, ?, ?)`,
		peer, f.Old, f.New, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("network: save fork: %w", err)
	}
	return nil
}

// Endorsed is one author's confidence in an experience.
type Endorsed struct {
	Author     string
	Confidence float64
}

// Endorse records that author published experience xid with confidence c
// (the latest record of an author counts) and returns every endorsing
// author's confidence, one per author.
func (s *State) Endorse(ctx context.Context, xid [32]byte, author string, c float64) ([]Endorsed, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO endorsements (xid, author, confidence) VALUES (?, ?, ?)
		ON CONFLICT (xid, author) DO UPDATE SET confidence = excluded.confidence`, xid[:], author, c); err != nil {
		return nil, fmt.Errorf("network: endorse: %w", err)
	}
	return s.Endorsements(ctx, xid)
}

// Endorsements returns every endorsing author's confidence in xid, one
// per author.
func (s *State) Endorsements(ctx context.Context, xid [32]byte) ([]Endorsed, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT author, confidence FROM endorsements WHERE xid = ? ORDER BY author`, xid[:])
	if err != nil {
		return nil, fmt.Errorf("network: endorsements: %w", err)
	}
	defer rows.Close()
	var out []Endorsed
	for rows.Next() {
		var e Endorsed
		if err := rows.Scan(&e.Author, &e.Confidence); err != nil {
			return nil, fmt.Errorf("network: endorsements: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// MarkAdmitted records that the store's experience storeID was created by
// admission from the network, not by this node: it is not this node's to
// publish.
func (s *State) MarkAdmitted(ctx context.Context, storeID string, xid [32]byte) error {
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO admitted (store_id, xid) VALUES (?, ?)`, storeID, xid[:]); err != nil {
		return fmt.Errorf("network: mark admitted: %w", err)
	}
	return nil
}

// Unmark undoes MarkAdmitted, for an experience the node had itself.
func (s *State) Unmark(ctx context.Context, storeID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM admitted WHERE store_id = ?`, storeID); err != nil {
		return fmt.Errorf("network: unmark admitted: %w", err)
	}
	return nil
}

// Admitted reports whether admission created the store's experience id.
func (s *State) Admitted(ctx context.Context, storeID string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM admitted WHERE store_id = ?`, storeID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("network: admitted: %w", err)
	}
	return n > 0, nil
}

// Quarantined is a record from an author without standing: kept and
// shown, never injected.
type Quarantined struct {
	Author     string    `json:"author"`
	Domain     string    `json:"domain"`
	Text       string    `json:"text"`
	Confidence float64   `json:"confidence"`
	Time       time.Time `json:"time"`
}

// ErrQuarantineFull reports a record the quarantine cannot keep: its
// author's share (MaxQuarantinePerAuthor) or the whole (MaxQuarantine) is
// taken. Admission returns it, so that the record is offered again.
var ErrQuarantineFull = errors.New("network: quarantine full")

// Quarantine keeps e, published by author, out of the library. A record
// of the author's kept already is updated in place; a new one is kept
// only while the author holds under its share and the quarantine under
// its cap, both counted in the transaction that inserts it.
func (s *State) Quarantine(ctx context.Context, author string, e Experience) error {
	xid := ExperienceID(e.Network, e.Domain, e.Text)
	// BEGIN IMMEDIATE (see treeDSN): no other writer between the counts
	// and the insert.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("network: quarantine: %w", err)
	}
	defer tx.Rollback()
	var kept, theirs, all int
	err = tx.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM quarantine WHERE xid = ? AND author = ?),
		(SELECT COUNT(*) FROM quarantine WHERE author = ?),
		(SELECT COUNT(*) FROM quarantine)`, xid[:], author, author).Scan(&kept, &theirs, &all)
	switch {
	case err != nil:
		return fmt.Errorf("network: quarantine: %w", err)
	case kept == 0 && theirs >= s.maxPerAuthor:
		return fmt.Errorf("%w: the author holds its share, %d records", ErrQuarantineFull, s.maxPerAuthor)
	case kept == 0 && all >= s.maxQuarantine:
		return fmt.Errorf("%w: %d records", ErrQuarantineFull, s.maxQuarantine)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO quarantine (xid, author, domain, text, confidence, at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (xid, author) DO UPDATE SET confidence = excluded.confidence, at = excluded.at`,
		xid[:], author, e.Domain, e.Text, e.Confidence, e.Time.UnixMilli())
	if err != nil {
		return fmt.Errorf("network: quarantine: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("network: quarantine: %w", err)
	}
	return nil
}

// ListQuarantine returns up to limit quarantined records, newest first,
// and how many there are.
func (s *State) ListQuarantine(ctx context.Context, limit int) ([]Quarantined, int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM quarantine`).Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("network: quarantine: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT author, domain, text, confidence, at FROM quarantine ORDER BY at DESC LIMIT ?`, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("network: quarantine: %w", err)
	}
	defer rows.Close()
	var out []Quarantined
	for rows.Next() {
		var q Quarantined
		var at int64
		if err := rows.Scan(&q.Author, &q.Domain, &q.Text, &q.Confidence, &at); err != nil {
			return nil, 0, fmt.Errorf("network: quarantine: %w", err)
		}
		q.Time = time.UnixMilli(at).UTC()
		out = append(out, q)
	}
	return out, n, rows.Err()
}

// Quarantined returns the records author (an AuthorID) has in quarantine,
// as the experiences of network they were.
func (s *State) Quarantined(ctx context.Context, network, author string) ([]Experience, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT domain, text, confidence, at FROM quarantine WHERE author = ? ORDER BY at`, author)
	if err != nil {
		return nil, fmt.Errorf("network: quarantine: %w", err)
	}
	defer rows.Close()
	var out []Experience
	for rows.Next() {
		e := Experience{Network: network}
		var at int64
		if err := rows.Scan(&e.Domain, &e.Text, &e.Confidence, &at); err != nil {
			return nil, fmt.Errorf("network: quarantine: %w", err)
		}
		e.Time = time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Release takes author's record of e out of quarantine.
func (s *State) Release(ctx context.Context, author string, e Experience) error {
	xid := ExperienceID(e.Network, e.Domain, e.Text)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM quarantine WHERE xid = ? AND author = ?`, xid[:], author); err != nil {
		return fmt.Errorf("network: release: %w", err)
	}
	return nil
}
