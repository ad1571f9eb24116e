package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// changeTriggers log every write to experiences (see migration 5);
// migration 9 makes them again on the table it rebuilds. Both are
// released: never edit it.
const changeTriggers = `	CREATE TRIGGER experiences_changes_insert AFTER INSERT ON experiences BEGIN
		INSERT INTO experience_changes (experience_id, at)
		VALUES (NEW.id, CAST(round(unixepoch('subsec') * 1000) AS INTEGER) * 1000000);
	END;
	CREATE TRIGGER experiences_changes_update AFTER UPDATE ON experiences BEGIN
		INSERT INTO experience_changes (experience_id, at)
		SELECT OLD.id, CAST(round(unixepoch('subsec') * 1000) AS INTEGER) * 1000000 WHERE OLD.id IS NOT NEW.id;
		INSERT INTO experience_changes (experience_id, at)
		VALUES (NEW.id, CAST(round(unixepoch('subsec') * 1000) AS INTEGER) * 1000000);
	END;
	CREATE TRIGGER experiences_changes_delete AFTER DELETE ON experiences BEGIN
		INSERT INTO experience_changes (experience_id, at)
		VALUES (OLD.id, CAST(round(unixepoch('subsec') * 1000) AS INTEGER) * 1000000);
	END;`

// migrations are applied in order; migrations[i] takes the schema from
// version i to version i+1 (user_version). Never edit a released entry:
// append a new one.
var migrations = []string{
	// 1: experiences and votes.
	`CREATE TABLE experiences (
		id           TEXT PRIMARY KEY,
		text         TEXT NOT NULL,
		domain       TEXT NOT NULL,
		confidence   REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
		status       TEXT NOT NULL CHECK (status IN ('active', 'retired')),
		source_model TEXT NOT NULL,
		source_node  TEXT NOT NULL,
		trace_id     TEXT NOT NULL,
		code         BLOB,
		created_at   INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX experiences_domain ON experiences (domain, id);
	CREATE TABLE votes (
		experience_id TEXT NOT NULL REFERENCES experiences (id) ON DELETE CASCADE,
		trace_id      TEXT NOT NULL,
		voter         TEXT NOT NULL,
		up            INTEGER NOT NULL,
		at            INTEGER NOT NULL,
		PRIMARY KEY (experience_id, trace_id, voter)
	) WITHOUT ROWID;`,
	// 2: traces, with indexes for retention.
	`CREATE TABLE traces (
		id             TEXT PRIMARY KEY,
		query          TEXT NOT NULL,
		domain         TEXT NOT NULL,
		experience_ids TEXT NOT NULL,
		model          TEXT NOT NULL,
		answer         TEXT NOT NULL,
		created_at     INTEGER NOT NULL
	);
	CREATE INDEX traces_created ON traces (created_at);`,
	// 3: feedback, which is also the durable distillation queue.
	`CREATE TABLE feedback (
		trace_id   TEXT NOT NULL,
		voter      TEXT NOT NULL,
		grade      REAL NOT NULL CHECK (grade >= 0 AND grade <= 1),
		comment    TEXT NOT NULL,
		correction TEXT NOT NULL,
		state      TEXT NOT NULL CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
		attempts   INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (trace_id, voter)
	) WITHOUT ROWID;
	CREATE INDEX feedback_state ON feedback (state, updated_at);
	CREATE INDEX votes_trace ON votes (trace_id);`,
	// 4: every code records the embedding space it was made in (before
	// this, the source model named it), and each space keeps the centre
	// its codes were made with.
	`ALTER TABLE experiences ADD COLUMN space TEXT NOT NULL DEFAULT '';
	UPDATE experiences SET space = source_model WHERE code IS NOT NULL;
	CREATE TABLE spaces (
		name       TEXT PRIMARY KEY,
		dim        INTEGER NOT NULL CHECK (dim > 0),
		mean       BLOB NOT NULL,
		created_at INTEGER NOT NULL
	) WITHOUT ROWID;`,
	// 5: the experience change log (see changes.go). Triggers write it, so
	// every write to experiences, from any code path in any process on the
	// file, is logged without the Go code having to remember. AUTOINCREMENT
	// keeps seq strictly increasing even after pruning empties the table's
	// top, so a follower's cursor never sees a seq reused. at is SQLite's
	// wall clock in Unix nanoseconds, whole milliseconds: one clock for
	// inserts, updates and deletes alike (a deleted row has no new
	// updated_at). It is informational; retention goes by row count. An
	// update that changed an id (none does: ids are content hashes) would
	// log the old id as well as the new.
	`CREATE TABLE experience_changes (
		seq           INTEGER PRIMARY KEY AUTOINCREMENT,
		experience_id TEXT NOT NULL,
		at            INTEGER NOT NULL
	);
` + changeTriggers,
	// 6: codes made for the space a library is moving to, kept apart until
	// every experience has one, so that the old space's codes go on
	// serving until the move is complete (see CommitPendingCodes).
	`CREATE TABLE pending_codes (
		experience_id TEXT PRIMARY KEY REFERENCES experiences (id) ON DELETE CASCADE,
		space         TEXT NOT NULL,
		code          BLOB NOT NULL
	) WITHOUT ROWID;`,
	// 7: each experience keeps the confidence it was created with, which
	// votes smooth toward (before this, the current confidence was used, so
	// each rescore compounded the last); older rows take their current
	// confidence, the best guess left. And a lesson may keep the question
	// it was learned from (key_text), embedded with its text.
	`ALTER TABLE experiences ADD COLUMN prior REAL NOT NULL DEFAULT 0;
	UPDATE experiences SET prior = confidence;
	ALTER TABLE experiences ADD COLUMN key_text TEXT NOT NULL DEFAULT '';`,
	// 8: Responses API responses that dso answered itself, for
	// previous_response_id and GET /v1/responses/{id}.
	`CREATE TABLE responses (
		id         TEXT PRIMARY KEY,
		model      TEXT NOT NULL,
		object     BLOB NOT NULL,
		input      BLOB NOT NULL,
		history    BLOB NOT NULL,
		created_at INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX responses_created ON responses (created_at);`,
	// 9: experiences move to a rowid table, the content-hash id a unique
	// key beside it. Keyed by the hash itself, the table put each new row
	// on a random page, so a batch of inserts rewrote as many pages as it
	// had rows; appended in rowid order, a batch fills a few new pages,
	// and only the narrow id index takes the random inserts. The
	// (domain, id) index served no query and goes. migrate runs this with
	// foreign keys off: dropping the old table would otherwise cascade to
	// the votes and pending codes that refer to it by name.
	`CREATE TABLE experiences_v9 (
		n            INTEGER PRIMARY KEY,
		id           TEXT NOT NULL UNIQUE,
		text         TEXT NOT NULL,
		domain       TEXT NOT NULL,
		confidence   REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
		status       TEXT NOT NULL CHECK (status IN ('active', 'retired')),
		source_model TEXT NOT NULL,
		source_node  TEXT NOT NULL,
		trace_id     TEXT NOT NULL,
		code         BLOB,
		created_at   INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL,
		space        TEXT NOT NULL DEFAULT '',
		prior        REAL NOT NULL DEFAULT 0,
		key_text     TEXT NOT NULL DEFAULT ''
	);
	INSERT INTO experiences_v9 (id, text, domain, confidence, status, source_model, source_node, trace_id, code, created_at, updated_at, space, prior, key_text)
		SELECT id, text, domain, confidence, status, source_model, source_node, trace_id, code, created_at, updated_at, space, prior, key_text
		FROM experiences ORDER BY created_at, id;
	DROP TABLE experiences;
	ALTER TABLE experiences_v9 RENAME TO experiences;
` + changeTriggers,
}

// migrate brings db to len(steps) in one transaction, on one connection
// with foreign keys off (SQLite's procedure for rebuilding a table:
// dropping a parent table with them on deletes its children), checked
// before the commit.
func migrate(ctx context.Context, db *sql.DB, steps []string) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer conn.Close()
	// The pragma is a no-op inside a transaction, so it goes first.
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer func() {
		if _, ferr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON"); ferr != nil {
			// Never hand the pool a connection without them.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("store: migrate: restoring foreign keys: %w", ferr))
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("store: migrate: read version: %w", err)
	}
	if v > len(steps) {
		return fmt.Errorf("%w: file is at version %d, this binary knows %d", ErrSchemaTooNew, v, len(steps))
	}
	if v == len(steps) {
		return nil
	}
	for i := v; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("store: migrate to version %d: %w", i+1, err)
		}
	}
	if err := foreignKeyCheck(ctx, tx); err != nil {
		return err
	}
	// PRAGMA takes no bound parameters; len(steps) is an int we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(steps))); err != nil {
		return fmt.Errorf("store: migrate: set version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migrate: commit: %w", err)
	}
	return nil
}

// foreignKeyCheck fails if any row refers to a parent that is not there.
func foreignKeyCheck(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("store: migrate: foreign key check: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fk int
		if err := rows.Scan(&table, &rowid, &parent, &fk); err != nil {
			return fmt.Errorf("store: migrate: foreign key check: %w", err)
		}
		return fmt.Errorf("store: migrate: a row of %s refers to a missing %s", table, parent)
	}
	return rows.Err()
}
