package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

const expColumns = `id, text, domain, confidence, status, source_model, source_node, trace_id, code, space, created_at, updated_at, prior, key_text`

type scanner interface{ Scan(dest ...any) error }

func scanExperience(sc scanner) (Experience, error) {
	var e Experience
	var created, updated int64
	var status string
	if err := sc.Scan(&e.ID, &e.Text, &e.Domain, &e.Confidence, &status, &e.SourceModel,
		&e.SourceNode, &e.TraceID, &e.Code, &e.Space, &created, &updated, &e.Prior, &e.Key); err != nil {
		return Experience{}, err
	}
	e.Status = Status(status)
	e.CreatedAt, e.UpdatedAt = fromNanos(created), fromNanos(updated)
	uncoded(&e)
	return e, nil
}

// uncoded gives an experience stored without a code no code and no space.
func uncoded(e *Experience) {
	if len(e.Code) == 0 {
		e.Code, e.Space = nil, ""
	}
}

// PutExperience stores e, normalising its text and domain and computing its
// ID. If an experience with the same domain and text exists, PutExperience
// writes nothing and returns the stored record and false. Invalid input
// (empty text, confidence outside [0,1], a code that is neither empty nor
// CodeSize bytes, ...) returns an error wrapping ErrInvalid and writes
// nothing. CreatedAt and UpdatedAt come from the store's clock.
func (s *SQLite) PutExperience(ctx context.Context, e Experience) (Experience, bool, error) {
	got, created, err := s.PutExperiences(ctx, []Experience{e})
	if err != nil {
		return Experience{}, false, err
	}
	return got[0], created[0], nil
}

// PutExperiences stores several experiences in one transaction: all are
// written or none. Each result is as PutExperience's for that input, in
// order. Use it for imports, where one commit per record would be slow.
func (s *SQLite) PutExperiences(ctx context.Context, es []Experience) ([]Experience, []bool, error) {
	now := s.now()
	prepared := make([]Experience, len(es))
	for i, e := range es {
		e, err := e.prepare()
		if err != nil {
			return nil, nil, fmt.Errorf("store: put experience %d: %w", i, err)
		}
		e.CreatedAt, e.UpdatedAt = now.UTC(), now.UTC()
		if len(e.Code) == 0 {
			e.Code, e.Space = nil, ""
		} else {
			e.Code = append([]byte(nil), e.Code...)
		}
		prepared[i] = e
	}
	// Written in id order: the ids are hashes, so in input order each row
	// would descend the id index to a page of its own, while in order a
	// batch walks it once, and the pages it dirties stay in the cache
	// until the commit. The sort is stable: the first of a repeated id is
	// still the one written.
	order := make([]int, len(prepared))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(prepared[a].ID, prepared[b].ID) })
	got := make([]Experience, len(es))
	created := make([]bool, len(es))
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		ins := inserter{tx: tx}
		defer ins.close()
		chunk := make([]Experience, 0, insertRows)
		for start := 0; start < len(order); start += insertRows {
			at := order[start:min(len(order), start+insertRows)]
			chunk = chunk[:0]
			for _, i := range at {
				chunk = append(chunk, prepared[i])
			}
			inserted, err := ins.insert(ctx, chunk, toNanos(now))
			if err != nil {
				return err
			}
			for _, i := range at {
				e := prepared[i]
				if inserted[e.ID] {
					delete(inserted, e.ID)
					got[i], created[i] = e, true
					continue
				}
				if got[i], err = scanExperience(tx.QueryRowContext(ctx,
					`SELECT `+expColumns+` FROM experiences WHERE id = ?`, e.ID)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: put experiences: %w", err)
	}
	return got, created, nil
}

// insertRows is how many experiences one INSERT statement writes: each
// statement costs a round through the driver and a statement journal, and
// 64 rows take 896 of the 32,766 parameters SQLite allows.
const insertRows = 64

// inserter writes experiences in one transaction, insertRows to a
// statement, skipping ids already stored. The statement for a whole chunk
// is prepared once: SQLite compiles a 64-row INSERT in about as long as
// it takes to run.
type inserter struct {
	tx   *sql.Tx
	full *sql.Stmt
}

// insert writes es (at most insertRows) and returns the ids it wrote.
func (in *inserter) insert(ctx context.Context, es []Experience, now int64) (map[string]bool, error) {
	args := make([]any, 0, 14*len(es))
	for _, e := range es {
		args = append(args, e.ID, e.Text, e.Domain, e.Confidence, string(e.Status), e.SourceModel, e.SourceNode,
			e.TraceID, e.Code, e.Space, now, now, e.Prior, e.Key)
	}
	var rows *sql.Rows
	var err error
	if len(es) == insertRows {
		if in.full == nil {
			if in.full, err = in.tx.PrepareContext(ctx, insertQuery(insertRows)); err != nil {
				return nil, err
			}
		}
		rows, err = in.full.QueryContext(ctx, args...)
	} else {
		rows, err = in.tx.QueryContext(ctx, insertQuery(len(es)), args...)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	inserted := make(map[string]bool, len(es))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		inserted[id] = true
	}
	return inserted, rows.Err()
}

func (in *inserter) close() {
	if in.full != nil {
		in.full.Close()
	}
}

// insertQuery is the INSERT of n experiences.
func insertQuery(n int) string {
	const row = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	return `INSERT INTO experiences (` + expColumns + `) VALUES ` + row +
		strings.Repeat(", "+row, n-1) + ` ON CONFLICT (id) DO NOTHING RETURNING id`
}

// GetExperience returns the experience with the given id, or an error
// wrapping ErrNotFound.
func (s *SQLite) GetExperience(ctx context.Context, id string) (Experience, error) {
	if err := s.check(); err != nil {
		return Experience{}, err
	}
	e, err := scanExperience(s.r.QueryRowContext(ctx,
		`SELECT `+expColumns+` FROM experiences WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Experience{}, fmt.Errorf("store: get experience %.16s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Experience{}, fmt.Errorf("store: get experience: %w", err)
	}
	return e, nil
}

// maxBatch bounds the bound parameters of one IN (...) query, well under
// SQLite's limit.
const maxBatch = 500

// GetExperiences loads the experiences with the given ids in the order
// asked. Ids that are not stored are skipped; a repeated id is returned
// once, at its first position. Up to 500 ids take one query.
func (s *SQLite) GetExperiences(ctx context.Context, ids []string) ([]Experience, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	byID := make(map[string]Experience, len(ids))
	for start := 0; start < len(ids); start += maxBatch {
		chunk := ids[start:min(start+maxBatch, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := `SELECT ` + expColumns + ` FROM experiences WHERE id IN (?` +
			strings.Repeat(", ?", len(chunk)-1) + `)`
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("store: get experiences: %w", err)
		}
		for rows.Next() {
			e, err := scanExperience(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: get experiences: %w", err)
			}
			byID[e.ID] = e
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("store: get experiences: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: get experiences: %w", err)
		}
	}
	out := make([]Experience, 0, len(byID))
	for _, id := range ids {
		if e, ok := byID[id]; ok {
			out = append(out, e)
			delete(byID, id)
		}
	}
	return out, nil
}

// DeleteExperience removes an experience and its votes. It returns an error
// wrapping ErrNotFound if there was none.
func (s *SQLite) DeleteExperience(ctx context.Context, id string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM experiences WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete experience %.16s: %w", id, err)
	}
	return nil
}

// Update lists the fields UpdateExperience changes; nil fields are left as
// they are. Text and domain never change: they define the ID.
type Update struct {
	Confidence *float64
	Status     *Status
	// Code replaces the code when non-nil; an empty non-nil slice clears it.
	// Space names the code's embedding space; it is required with a
	// non-empty Code.
	Code  []byte
	Space string
}

// UpdateExperience applies u to the experience with the given id, sets its
// UpdatedAt, and returns the updated record. It returns an error wrapping
// ErrNotFound if there is none, or ErrInvalid if u is invalid (nothing is
// written then).
func (s *SQLite) UpdateExperience(ctx context.Context, id string, u Update) (Experience, error) {
	if u.Confidence != nil {
		if err := checkConfidence(*u.Confidence); err != nil {
			return Experience{}, fmt.Errorf("store: update experience: %w", err)
		}
	}
	if u.Status != nil {
		if err := checkStatus(*u.Status); err != nil {
			return Experience{}, fmt.Errorf("store: update experience: %w", err)
		}
	}
	if u.Code != nil {
		if err := checkCode(u.Code, u.Space); err != nil {
			return Experience{}, fmt.Errorf("store: update experience: %w", err)
		}
	}
	var got Experience
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		set := []string{"updated_at = ?"}
		args := []any{toNanos(s.now())}
		if u.Confidence != nil {
			set, args = append(set, "confidence = ?"), append(args, *u.Confidence)
		}
		if u.Status != nil {
			set, args = append(set, "status = ?"), append(args, string(*u.Status))
		}
		if u.Code != nil {
			var code []byte
			space := ""
			if len(u.Code) > 0 {
				code, space = u.Code, u.Space
			}
			set, args = append(set, "code = ?", "space = ?"), append(args, code, space)
		}
		args = append(args, id)
		res, err := tx.ExecContext(ctx,
			`UPDATE experiences SET `+strings.Join(set, ", ")+` WHERE id = ?`, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		got, err = scanExperience(tx.QueryRowContext(ctx,
			`SELECT `+expColumns+` FROM experiences WHERE id = ?`, id))
		return err
	})
	if err != nil {
		return Experience{}, fmt.Errorf("store: update experience %.16s: %w", id, err)
	}
	return got, nil
}

// ListOptions selects a page of experiences.
type ListOptions struct {
	// DomainPrefix keeps experiences whose normalised domain starts with
	// it (byte prefix, so "code" matches "code" and "code/go"). Empty
	// matches all.
	DomainPrefix string
	// Status keeps only experiences in this state. Empty matches all.
	Status Status
	// Limit is the page size. 0 means 100; it is capped at 1000.
	Limit int
	// After is the cursor returned with the previous page; empty starts
	// at the beginning.
	After string
}

// prepare checks o and fills in its defaults: a page of 100, at most
// 1,000, and the domain prefix normalised.
func (o ListOptions) prepare() (ListOptions, error) {
	if o.Status != "" {
		if err := checkStatus(o.Status); err != nil {
			return o, fmt.Errorf("store: list experiences: %w", err)
		}
	}
	if o.Limit <= 0 {
		o.Limit = 100
	}
	o.Limit = min(o.Limit, 1000)
	o.DomainPrefix = NormalizeDomain(o.DomainPrefix)
	return o, nil
}

// ListExperiences returns one page of experiences ordered by ID, and the
// cursor for the next page, empty when this page is the last. Paging is by
// key, so pages stay consistent while other goroutines write.
func (s *SQLite) ListExperiences(ctx context.Context, o ListOptions) ([]Experience, string, error) {
	if err := s.check(); err != nil {
		return nil, "", err
	}
	o, err := o.prepare()
	if err != nil {
		return nil, "", err
	}
	limit, prefix := o.Limit, o.DomainPrefix
	q := `SELECT ` + expColumns + ` FROM experiences WHERE id > ?`
	args := []any{o.After}
	if prefix != "" {
		q += ` AND substr(CAST(domain AS BLOB), 1, ?) = CAST(? AS BLOB)`
		args = append(args, len(prefix), prefix)
	}
	if o.Status != "" {
		q += ` AND status = ?`
		args = append(args, string(o.Status))
	}
	q += ` ORDER BY id LIMIT ?`
	// One more than asked tells whether a next page exists.
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list experiences: %w", err)
	}
	defer rows.Close()
	var out []Experience
	for rows.Next() {
		e, err := scanExperience(rows)
		if err != nil {
			return nil, "", fmt.Errorf("store: list experiences: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list experiences: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// EachIndexed is EachExperience with only what a search index holds of
// each experience: ID, Domain, Confidence, Status, Code and Space; the
// other fields are zero. Leaving the texts and the rest unread makes a
// start's walk of a million experiences a third faster.
func (s *SQLite) EachIndexed(ctx context.Context, fn func(Experience) error) error {
	return s.each(ctx, "each indexed", `SELECT id, domain, confidence, status, code, space FROM experiences ORDER BY id`, scanIndexed, fn)
}

// scanIndexed scans the columns EachIndexed selects.
func scanIndexed(sc scanner) (Experience, error) {
	var e Experience
	var status string
	if err := sc.Scan(&e.ID, &e.Domain, &e.Confidence, &status, &e.Code, &e.Space); err != nil {
		return Experience{}, err
	}
	e.Status = Status(status)
	uncoded(&e)
	return e, nil
}

// EachExperience calls fn for every stored experience, in ID order,
// streaming rows rather than loading them all; it is meant for walks that
// need whole records (export, re-embedding; an index is filled with
// EachIndexed). An error from fn stops the walk and is
// returned as is. Writes made during the walk may or may not be seen.
func (s *SQLite) EachExperience(ctx context.Context, fn func(Experience) error) error {
	return s.each(ctx, "each experience", `SELECT `+expColumns+` FROM experiences ORDER BY id`, scanExperience, fn)
}

// each streams the experiences query q selects, scanned by scan, to fn;
// what names the walk in errors.
func (s *SQLite) each(ctx context.Context, what, q string, scan func(scanner) (Experience, error), fn func(Experience) error) error {
	if err := s.check(); err != nil {
		return err
	}
	rows, err := s.r.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scan(rows)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return nil
}
