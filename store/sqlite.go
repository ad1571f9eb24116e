package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database file Open creates under a data directory when
// given a directory rather than a file (see OpenDir).
const FileName = "dso.db"

// Clock tells the store the time. Tests pass a fake; nil means the system
// clock.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Options configures a SQLite store. The zero value is a valid
// configuration: defaults are documented per field.
type Options struct {
	// MaxTraces keeps at most this many traces, dropping the oldest when
	// PutTrace inserts a new one. 0 means DefaultMaxTraces; negative means
	// no count limit.
	MaxTraces int
	// TraceMaxAge drops traces older than this when PutTrace inserts one
	// and on PruneTraces. 0 means DefaultTraceMaxAge; negative means no age
	// limit.
	TraceMaxAge time.Duration
	// MaxResponses and ResponseMaxAge bound the Responses API responses
	// kept, as MaxTraces and TraceMaxAge bound traces. 0 means
	// DefaultMaxResponses and DefaultResponseMaxAge; negative means no
	// limit.
	MaxResponses   int
	ResponseMaxAge time.Duration
	// BusyTimeout is how long a write waits for a lock held by another
	// process on the same file. 0 means 5s.
	BusyTimeout time.Duration
	// ReadConns is the size of the read connection pool. 0 means
	// max(4, GOMAXPROCS).
	ReadConns int
	// Clock supplies timestamps. nil means the system clock.
	Clock Clock
	// MustExist opens only a store that is there: where the file is not,
	// Open creates nothing (no directory, no database) and returns an
	// error that wraps fs.ErrNotExist. False: Open creates both. Commands
	// that only read the store set it, so that a mistyped directory is an
	// error rather than a new, empty store.
	MustExist bool
	// BulkLoad tunes the writer for a command that writes many
	// experiences in large transactions and exits (dso import): the
	// write-ahead log is copied into the database every
	// bulkCheckpointPages pages instead of SQLite's 1,000, the writer's
	// cache is bulkCacheKiB, and Close copies and truncates what is left
	// of the log. A commit of thousands of rows fills the log past 1,000
	// pages by itself, so at the default every commit is checkpointed and
	// the id index pages every batch touches are written twice per batch;
	// and a batch whose dirty pages do not fit the cache spills them to
	// the log before it commits.
	BulkLoad bool
}

// Defaults for Options.
const (
	DefaultMaxTraces   = 100_000
	DefaultTraceMaxAge = 30 * 24 * time.Hour
	// DefaultMaxResponses and DefaultResponseMaxAge: OpenAI keeps a
	// stored response for 30 days.
	DefaultMaxResponses   = 10_000
	DefaultResponseMaxAge = 30 * 24 * time.Hour
)

func (o Options) withDefaults() Options {
	if o.MaxTraces == 0 {
		o.MaxTraces = DefaultMaxTraces
	}
	if o.TraceMaxAge == 0 {
		o.TraceMaxAge = DefaultTraceMaxAge
	}
	if o.MaxResponses == 0 {
		o.MaxResponses = DefaultMaxResponses
	}
	if o.ResponseMaxAge == 0 {
		o.ResponseMaxAge = DefaultResponseMaxAge
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.ReadConns <= 0 {
		o.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	return o
}

// SQLite is the embedded store: one SQLite file.
type SQLite struct {
	w      *sql.DB // one connection: every write, serialised
	r      *sql.DB // read-only pool
	opts   Options
	closed atomic.Bool
	// traces estimates the stored traces (this process's inserts since the
	// last count), so that the count limit walks the table only when it
	// may be exceeded.
	traces atomic.Int64
	// responses estimates the stored responses once responsesCounted;
	// both are used only inside write transactions, which are serial.
	responses        int64
	responsesCounted bool
	// putTrace and putTraceRun insert one trace and traceRun traces:
	// prepared once on the writer's connection, not per batch (parsing the
	// statement cost as much as a few rows).
	putTrace, putTraceRun *sql.Stmt
}

// Open opens or creates the SQLite database file at path, creating its
// directory if needed (see Options.MustExist), and migrates its schema to
// the current version. Close the returned store when done.
func Open(ctx context.Context, path string, opts Options) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("store: open: empty path")
	}
	if opts.MustExist {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
	} else if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
	}
	s := &SQLite{opts: opts.withDefaults()}
	if err := s.open(ctx, path); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenDir opens the store file FileName inside the data directory dir.
func OpenDir(ctx context.Context, dir string, opts Options) (*SQLite, error) {
	return Open(ctx, filepath.Join(dir, FileName), opts)
}

func (s *SQLite) open(ctx context.Context, path string) error {
	var err error
	// The writer is opened first so that it creates the file and switches
	// it to WAL before any reader opens it read-only.
	if s.w, err = sql.Open("sqlite", dsn(path, s.opts.BusyTimeout, false, s.opts.BulkLoad)); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxIdleTime(0)
	s.w.SetConnMaxLifetime(0)
	if err := migrate(ctx, s.w, migrations); err != nil {
		return err
	}
	if s.putTrace, err = s.w.PrepareContext(ctx, insertTraces(1)); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	if s.putTraceRun, err = s.w.PrepareContext(ctx, insertTraces(traceRun)); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	if s.r, err = sql.Open("sqlite", dsn(path, s.opts.BusyTimeout, true, false)); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	s.r.SetMaxOpenConns(s.opts.ReadConns)
	s.r.SetMaxIdleConns(s.opts.ReadConns)
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	var n int64
	if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM traces`).Scan(&n); err != nil {
		return fmt.Errorf("store: open: counting traces: %w", err)
	}
	s.traces.Store(n)
	return nil
}

// writerCacheKiB is the writer's page cache, in KiB (negative for
// SQLite's cache_size): filled only as pages are used.
const writerCacheKiB = -32768

// Under Options.BulkLoad: the writer's wal_autocheckpoint (100,000 pages
// of 4 KiB bound the log at about 400 MB) and cache (a batch of 32,768
// rows into a store of 10M dirties about 128 MiB of the id index).
const (
	bulkCheckpointPages = 100_000
	bulkCacheKiB        = -262144
)

// dsn builds the connection string. Every connection of the pool runs the
// pragmas:
//   - journal_mode=WAL: readers do not block the writer nor it them.
//   - synchronous=FULL: in WAL mode, FULL fsyncs the log on every commit, so
//     a commit that returned is durable across power loss; NORMAL would only
//     sync at checkpoints and could lose the last commits. "A write is
//     acknowledged only after it is committed" needs FULL. Trace
//     transactions alone run NORMAL (writeTxUnsynced).
//   - foreign_keys=ON: votes cascade when their experience is deleted.
//   - busy_timeout: wait for locks held by other processes instead of
//     failing at once.
//
// Write transactions begin IMMEDIATE so they take the write lock up front
// and never fail half-way on a lock upgrade.
//   - cache_size on the writer: experiences are keyed by a hash, so a
//     batch of them lands on as many pages of the table as it has rows;
//     SQLite's default 2 MiB cache spills a batch of 256 to the log page
//     by page before it commits (and reads them back for the next).
//   - a larger cache and wal_autocheckpoint on the writer under
//     Options.BulkLoad.
func dsn(path string, busy time.Duration, readOnly, bulk bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(ON)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		if bulk {
			q.Add("_pragma", fmt.Sprintf("cache_size(%d)", bulkCacheKiB))
			q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", bulkCheckpointPages))
		} else {
			q.Add("_pragma", fmt.Sprintf("cache_size(%d)", writerCacheKiB))
		}
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Opaque: path, RawQuery: q.Encode()}
	return u.String()
}

// Close closes the database. It is safe to call on a store whose Open
// failed half-way, and more than once.
func (s *SQLite) Close() error {
	if s == nil || s.closed.Swap(true) {
		return nil
	}
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	for _, st := range []*sql.Stmt{s.putTrace, s.putTraceRun} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.w != nil {
		if s.opts.BulkLoad {
			errs = append(errs, s.truncateLog())
		}
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// truncateLog copies the whole write-ahead log into the database and
// empties it, so that a bulk load leaves no log of hundreds of MB behind.
// Where another process still reads an older snapshot it copies what it
// can: the log is then emptied at a later checkpoint.
func (s *SQLite) truncateLog() error {
	var busy, logPages, copied int
	if err := s.w.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &copied); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func (s *SQLite) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// SchemaVersion returns the schema version of the open file.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var v int
	if err := s.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

// writeTx runs fn in one write transaction and commits it.
func (s *SQLite) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if err := s.check(); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// writeTxUnsynced is writeTx committed with synchronous=NORMAL: the
// commit is in the write-ahead log, and survives a process crash, but is
// not synced to disk before it returns; the next synchronous commit (or a
// checkpoint) syncs it with its own, since the log is one file written in
// order. So a power cut may lose it until then. For records no one has
// been told are durable (traces), it saves a sync per transaction.
func (s *SQLite) writeTxUnsynced(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	if err := s.check(); err != nil {
		return err
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		return err
	}
	defer func() {
		// The connection takes every write: it must not stay NORMAL. If it
		// cannot be put back, it is discarded (a new one opens FULL).
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = FULL"); rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("restoring synchronous=FULL: %w", rerr))
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *SQLite) now() time.Time { return s.opts.Clock.Now() }

// Times are stored as Unix nanoseconds (INTEGER) and read back in UTC.
func toNanos(t time.Time) int64 { return t.UnixNano() }
func fromNanos(n int64) time.Time {
	return time.Unix(0, n).UTC()
}
