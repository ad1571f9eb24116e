package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// SpaceStats is what a library keeps about one embedding space: the centre
// its codes were made with. It is fixed once the first code exists, since
// every code depends on it.
type SpaceStats struct {
	Name string
	// Mean is subtracted from every vector of the space before the lift.
	Mean []float32
}

// maxSpaceDim bounds a space's dimension (the widest embedding models
// are a few thousand dims).
const maxSpaceDim = 1 << 16

// GetSpace returns the stats stored for space name, or an error wrapping
// ErrNotFound.
func (s *SQLite) GetSpace(ctx context.Context, name string) (SpaceStats, error) {
	if err := s.check(); err != nil {
		return SpaceStats{}, err
	}
	var dim int
	var blob []byte
	err := s.r.QueryRowContext(ctx, `SELECT dim, mean FROM spaces WHERE name = ?`, name).Scan(&dim, &blob)
	if errors.Is(err, sql.ErrNoRows) {
		return SpaceStats{}, fmt.Errorf("store: space %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return SpaceStats{}, fmt.Errorf("store: get space: %w", err)
	}
	if len(blob) != 4*dim {
		return SpaceStats{}, fmt.Errorf("store: space %q: mean is %d bytes for %d dims", name, len(blob), dim)
	}
	mean := make([]float32, dim)
	for i := range mean {
		mean[i] = math.Float32frombits(binary.LittleEndian.Uint32(blob[4*i:]))
	}
	return SpaceStats{Name: name, Mean: mean}, nil
}

// PutSpace stores sp unless stats for its name exist already; either way
// it returns the stats now stored, so that two processes racing to create
// a space agree on one centre.
func (s *SQLite) PutSpace(ctx context.Context, sp SpaceStats) (SpaceStats, error) {
	if sp.Name == "" || len(sp.Name) > MaxFieldBytes || len(sp.Mean) == 0 || len(sp.Mean) > maxSpaceDim {
		return SpaceStats{}, fmt.Errorf("store: put space: %w: name %q, %d dims", ErrInvalid, sp.Name, len(sp.Mean))
	}
	blob := make([]byte, 4*len(sp.Mean))
	for i, v := range sp.Mean {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return SpaceStats{}, fmt.Errorf("store: put space: %w: mean is not finite", ErrInvalid)
		}
		binary.LittleEndian.PutUint32(blob[4*i:], math.Float32bits(v))
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO spaces (name, dim, mean, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, sp.Name, len(sp.Mean), blob, toNanos(s.now()))
		return err
	})
	if err != nil {
		return SpaceStats{}, fmt.Errorf("store: put space: %w", err)
	}
	return s.GetSpace(ctx, sp.Name)
}

// SampleExperiences returns up to n active experiences with a code in
// space, chosen at random.
func (s *SQLite) SampleExperiences(ctx context.Context, space string, n int) ([]Experience, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+expColumns+` FROM experiences
		WHERE space = ? AND status = 'active' AND code IS NOT NULL ORDER BY random() LIMIT ?`, space, n)
	if err != nil {
		return nil, fmt.Errorf("store: sample experiences: %w", err)
	}
	defer rows.Close()
	var out []Experience
	for rows.Next() {
		e, err := scanExperience(rows)
		if err != nil {
			return nil, fmt.Errorf("store: sample experiences: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sample experiences: %w", err)
	}
	return out, nil
}

// CodeUpdate gives one experience a new code in a space.
type CodeUpdate struct {
	ID    string
	Code  []byte
	Space string
}

// SetCodes replaces the codes of several experiences in one transaction;
// ids no longer stored are skipped. It is how a library moves to a new
// embedding space.
func (s *SQLite) SetCodes(ctx context.Context, us []CodeUpdate) error {
	for _, u := range us {
		if len(u.Code) == 0 {
			return fmt.Errorf("store: set codes: %w: no code for %.16s", ErrInvalid, u.ID)
		}
		if err := checkCode(u.Code, u.Space); err != nil {
			return fmt.Errorf("store: set codes: %w", err)
		}
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE experiences SET code = ?, space = ?, updated_at = ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		now := toNanos(s.now())
		for _, u := range us {
			if _, err := st.ExecContext(ctx, u.Code, u.Space, now, u.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: set codes: %w", err)
	}
	return nil
}

// CountCodes is the number of experiences with a code in space.
func (s *SQLite) CountCodes(ctx context.Context, space string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM experiences WHERE space = ? AND code IS NOT NULL`, space).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count codes: %w", err)
	}
	return n, nil
}

// CountSpaces returns how many experiences have a code in each embedding
// space, and under "" how many have none: what a library starting over
// the store needs to choose its space, without reading every record. It
// reads the whole table once (about a second at a million experiences),
// the codes' bytes not at all.
func (s *SQLite) CountSpaces(ctx context.Context) (map[string]int, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	// One read transaction: both counts of the same moment.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: count spaces: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT space, count(*) FROM experiences WHERE code IS NOT NULL GROUP BY space`)
	if err != nil {
		return nil, fmt.Errorf("store: count spaces: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	coded := 0
	for rows.Next() {
		var sp string
		var n int
		if err := rows.Scan(&sp, &n); err != nil {
			return nil, fmt.Errorf("store: count spaces: %w", err)
		}
		counts[sp] += n
		coded += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count spaces: %w", err)
	}
	// The uncoded ones as all less the coded: count(*) alone reads the
	// small domain index, where "code IS NULL" in a grouping would read
	// every code.
	var all int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM experiences`).Scan(&all); err != nil {
		return nil, fmt.Errorf("store: count spaces: %w", err)
	}
	if all > coded {
		counts[""] += all - coded
	}
	return counts, nil
}

// PutPendingCodes stores codes made for a space a library is moving to,
// beside the experiences' current codes (replacing earlier pending ones).
// Ids no longer stored are skipped.
func (s *SQLite) PutPendingCodes(ctx context.Context, us []CodeUpdate) error {
	for _, u := range us {
		if len(u.Code) == 0 {
			return fmt.Errorf("store: put pending codes: %w: no code for %.16s", ErrInvalid, u.ID)
		}
		if err := checkCode(u.Code, u.Space); err != nil {
			return fmt.Errorf("store: put pending codes: %w", err)
		}
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO pending_codes (experience_id, space, code)
			SELECT id, ?, ? FROM experiences WHERE id = ?
			ON CONFLICT (experience_id) DO UPDATE SET space = excluded.space, code = excluded.code`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, u := range us {
			if _, err := st.ExecContext(ctx, u.Space, u.Code, u.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: put pending codes: %w", err)
	}
	return nil
}

// PendingCodes calls fn for every pending code made for space.
func (s *SQLite) PendingCodes(ctx context.Context, space string, fn func(id string, code []byte) error) error {
	if err := s.check(); err != nil {
		return err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT experience_id, code FROM pending_codes WHERE space = ?`, space)
	if err != nil {
		return fmt.Errorf("store: pending codes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var code []byte
		if err := rows.Scan(&id, &code); err != nil {
			return fmt.Errorf("store: pending codes: %w", err)
		}
		if err := fn(id, code); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ErrIncomplete: CommitPendingCodes found experiences with neither a code
// in the space nor a pending one; nothing was changed.
var ErrIncomplete = errors.New("store: experiences without a code in the new space")

// CommitPendingCodes makes the pending codes of space the experiences'
// codes, in one transaction, if every experience has a code in space
// either way; else it changes nothing and returns an error wrapping
// ErrIncomplete with the number missing. Pending codes of other spaces
// stay pending.
func (s *SQLite) CommitPendingCodes(ctx context.Context, space string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var missing int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM experiences e
			WHERE NOT (e.space = ? AND e.code IS NOT NULL)
			AND NOT EXISTS (SELECT 1 FROM pending_codes p WHERE p.experience_id = e.id AND p.space = ?)`, space, space).Scan(&missing); err != nil {
			return err
		}
		if missing > 0 {
			return fmt.Errorf("%w: %d", ErrIncomplete, missing)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE experiences SET
			code = (SELECT p.code FROM pending_codes p WHERE p.experience_id = experiences.id),
			space = ?, updated_at = ?
			WHERE id IN (SELECT experience_id FROM pending_codes WHERE space = ?)`, space, toNanos(s.now()), space); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM pending_codes WHERE space = ?`, space)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: commit pending codes: %w", err)
	}
	return nil
}
