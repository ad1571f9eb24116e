package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ErrUnavailable reports that the store could not be reached or did not
// answer in time. A write that fails with it was not acknowledged: it may
// or may not have been applied, and retrying it is safe (every write is
// idempotent or a replace). Callers answer 503 and retry later.
var ErrUnavailable = errors.New("store: unavailable")

// RedisOptions configures a Redis store. The zero value is a valid
// configuration: defaults are documented per field.
type RedisOptions struct {
	// Prefix is put before every key, so that several libraries can share
	// one Redis database. Empty means "dso:".
	Prefix string
	// Timeout bounds every Redis call (connecting, writing, reading, waiting
	// for a pooled connection). 0 means 2s.
	Timeout time.Duration
	// MaxTraces and TraceMaxAge are as in Options: 0 means
	// DefaultMaxTraces and DefaultTraceMaxAge; negative means no limit.
	// Traces expire in Redis by their TTL.
	MaxTraces   int
	TraceMaxAge time.Duration
	// MaxResponses and ResponseMaxAge are as in Options.
	MaxResponses   int
	ResponseMaxAge time.Duration
	// MaxTurnNotes and TurnNotesMaxAge bound the shared turn notes
	// (PutTurnNotes). 0 means DefaultMaxTurnNotes and
	// DefaultTurnNotesMaxAge.
	MaxTurnNotes    int
	TurnNotesMaxAge time.Duration
	// KeepChanges bounds the change stream: each write trims it to about
	// this many entries. 0 means DefaultKeepChanges.
	KeepChanges int
	// Clock supplies timestamps. nil means the system clock.
	Clock Clock
	// Logger receives what the server promises about durability, once at
	// Open. Nil discards.
	Logger *slog.Logger
}

func (o RedisOptions) withDefaults() RedisOptions {
	if o.Prefix == "" {
		o.Prefix = "dso:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
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
	if o.MaxTurnNotes <= 0 {
		o.MaxTurnNotes = DefaultMaxTurnNotes
	}
	if o.TurnNotesMaxAge <= 0 {
		o.TurnNotesMaxAge = DefaultTurnNotesMaxAge
	}
	if o.KeepChanges <= 0 {
		o.KeepChanges = DefaultKeepChanges
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Redis is the shared store: several dso replicas use one Redis server,
// and each keeps its own search index in step by following the change
// stream (see Changes and WaitChanges).
//
// Every write is one Lua script or one MULTI transaction, so it is applied
// whole or not at all, and an experience's write and its change entry
// land together. A write returns once Redis acknowledged it; what that
// acknowledgement survives depends on the server's persistence settings,
// which Open reads and Durability reports.
type Redis struct {
	c *redis.Client
	// w runs the write scripts, never retried: a script whose reply was
	// lost with its connection may have run, and running it again would
	// count twice (a feedback attempt, say). The caller gets
	// ErrUnavailable and decides.
	w      *redis.Client
	opts   RedisOptions
	dur    Durability
	closed atomic.Bool
}

// Durability is what a Redis server promises about an acknowledged write,
// read from its configuration.
type Durability struct {
	AppendOnly  bool   // appendonly yes
	AppendFsync string // always, everysec or no
	// WaitAOF: the server has WAITAOF (7.2+), so every write waits for the
	// local fsync of the append-only file when AppendFsync is not always.
	WaitAOF bool
}

// Full reports whether an acknowledged write survives a power cut.
func (d Durability) Full() bool { return d.AppendOnly && (d.AppendFsync == "always" || d.WaitAOF) }

// Survives says in words what an acknowledged write survives.
func (d Durability) Survives() string {
	switch {
	case !d.AppendOnly:
		return "nothing certain: appendonly is off, so a Redis restart loses every write since the last RDB snapshot"
	case d.AppendFsync == "always" || d.WaitAOF:
		return "a Redis crash and a power loss: the append-only file is fsynced before the write is acknowledged"
	case d.AppendFsync == "everysec":
		return "a Redis process crash, but a power loss or kernel crash may lose about the last second of writes (appendfsync everysec)"
	default:
		return "a Redis process crash, but a power loss may lose writes the kernel had not flushed (appendfsync " + d.AppendFsync + ")"
	}
}

// OpenRedis connects to the Redis server at url (redis://[user:pass@]host:port/db,
// or rediss:// for TLS), checks that it answers, and reads its durability
// settings. Close the returned store when done.
func OpenRedis(ctx context.Context, url string, opts RedisOptions) (*Redis, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("store: redis: bad url: %w", errors.New(redactURLError(err)))
	}
	opts = opts.withDefaults()
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = opts.Timeout, opts.Timeout, opts.Timeout, opts.Timeout
	o.ContextTimeoutEnabled = true
	// One retry, soon, for a pooled connection the server dropped (a
	// restart); one dial per attempt, so that a server that is down is
	// reported within a request's retrieval budget, not after go-redis's
	// five dials 100ms apart.
	o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = 1, 5*time.Millisecond, 20*time.Millisecond
	o.DialerRetries = 1
	quietOnce.Do(func() { redis.SetLogger(quiet{}) })
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	wo := *o
	wo.MaxRetries = -1
	r := &Redis{c: redis.NewClient(o), w: redis.NewClient(&wo), opts: opts}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := r.c.Ping(ctx).Err(); err != nil {
		r.c.Close()
		r.w.Close()
		return nil, r.fail("open", err)
	}
	if r.dur, err = r.readDurability(ctx); err != nil {
		r.c.Close()
		r.w.Close()
		return nil, err
	}
	level := slog.LevelInfo
	if !r.dur.Full() {
		level = slog.LevelWarn // short of "acknowledged only once durable"
	}
	opts.Logger.Log(ctx, level, "store: redis: an acknowledged write survives "+r.dur.Survives(),
		"appendonly", r.dur.AppendOnly, "appendfsync", r.dur.AppendFsync, "waitaof", r.dur.WaitAOF)
	return r, nil
}

// quiet drops go-redis's own log lines (a line per failed dial while the
// server is down): the store reports its failures as errors, and callers
// log them once. go-redis's logger is global, so OpenRedis sets it once.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// redactURLError keeps a URL parse error from echoing a password.
func redactURLError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 {
		return "cannot parse the redis url"
	}
	return msg
}

func (r *Redis) readDurability(ctx context.Context) (Durability, error) {
	var d Durability
	cfg, err := r.c.ConfigGet(ctx, "append*").Result()
	if err != nil {
		return d, r.fail("config get", err)
	}
	d.AppendOnly = cfg["appendonly"] == "yes"
	d.AppendFsync = cfg["appendfsync"]
	// COMMAND INFO answers nil for a command the server does not have.
	info, err := r.c.Do(ctx, "COMMAND", "INFO", "WAITAOF").Slice()
	if err == nil && len(info) == 1 && info[0] != nil && d.AppendOnly && d.AppendFsync != "always" {
		d.WaitAOF = true
	}
	return d, nil
}

// Durability returns the server's durability settings as read at Open.
func (r *Redis) Durability() Durability { return r.dur }

// Close closes the connections. It is safe to call more than once.
func (r *Redis) Close() error {
	if r == nil || r.closed.Swap(true) {
		return nil
	}
	if err := errors.Join(r.c.Close(), r.w.Close()); err != nil {
		return fmt.Errorf("store: redis: close: %w", err)
	}
	return nil
}

// Ping checks that the server answers, within the store's timeout.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.check(); err != nil {
		return err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	if err := r.c.Ping(ctx).Err(); err != nil {
		return r.fail("ping", err)
	}
	return nil
}

func (r *Redis) check() error {
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// bound gives one store call its own deadline.
func (r *Redis) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.Timeout)
}

// durably sends the write cmds queues and, where the server has WAITAOF,
// waits for the append-only file to hold it. WAITAOF counts the writes of
// the connection it is sent on, so both go in one pipeline (one
// connection), on the client that never retries.
func (r *Redis) durably(ctx context.Context, op string, cmds func(p redis.Pipeliner)) error {
	var wa *redis.Cmd
	_, _ = r.w.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds(p)
		if r.dur.WaitAOF {
			wa = p.Do(ctx, "WAITAOF", 1, 0, r.opts.Timeout.Milliseconds())
		}
		return nil
	})
	if wa == nil {
		return nil
	}
	res, err := wa.Slice()
	if err != nil {
		return r.fail(op, err)
	}
	if len(res) == 0 || res[0] != int64(1) {
		return fmt.Errorf("store: %s: %w: append-only file not fsynced in time", op, ErrUnavailable)
	}
	return nil
}

// fail wraps a Redis error for op: a connection failure, a timeout or a
// server that is loading, read-only or busy wraps ErrUnavailable.
func (r *Redis) fail(op string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// An EOF or reset read from a connection the server dropped.
	s := err.Error()
	return strings.Contains(s, "EOF") || strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe") ||
		strings.Contains(s, "connection refused")
}

func (r *Redis) now() time.Time { return r.opts.Clock.Now() }

// Keys. Every key starts with the prefix; ids are content hashes and
// space names come from configuration, so keys need no escaping beyond
// what Redis allows (any bytes).
func (r *Redis) key(parts ...string) string { return r.opts.Prefix + strings.Join(parts, ":") }
