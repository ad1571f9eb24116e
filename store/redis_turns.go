package store

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Turn notes: what dso injected into one turn of a conversation, keyed by
// a hash of the client's messages up to it, shared by the replicas on one
// Redis so that a conversation's next turn, whichever replica serves it,
// gets the notes put back where they were. A cache, not a record: kept
// for TurnNotesMaxAge, the newest MaxTurnNotes, and not fsynced.

// Defaults for RedisOptions.MaxTurnNotes and TurnNotesMaxAge.
const (
	DefaultMaxTurnNotes    = 100_000
	DefaultTurnNotesMaxAge = 24 * time.Hour
)

// ARGV[4] key, [5] value, [6] TTL ms, [7] count limit. The index (a
// sorted set by time) lets the count be bounded; keys also expire alone.
var luaPutTurnNotes = script(`
local z = p .. 'turns'
redis.call('SET', p .. 'turn:' .. ARGV[4], ARGV[5], 'PX', ARGV[6])
redis.call('ZADD', z, now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. (tonumber(now) - tonumber(ARGV[6]) * 1000000))
keepnewest(z, p .. 'turn:', tonumber(ARGV[7]))
return 1
`)

// PutTurnNotes keeps value under key for TurnNotesMaxAge.
func (r *Redis) PutTurnNotes(ctx context.Context, key string, value []byte) error {
	if err := r.check(); err != nil {
		return err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	args := []any{r.opts.Prefix, r.opts.KeepChanges, r.now().UnixNano(), key, value, r.opts.TurnNotesMaxAge.Milliseconds(), r.opts.MaxTurnNotes}
	if err := luaPutTurnNotes.Run(ctx, r.c, nil, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return r.fail("put turn notes", err)
	}
	return nil
}

// TurnNotes reads the values kept under keys, in one round trip; nil
// where none is kept.
func (r *Redis) TurnNotes(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.key("turn", k)
	}
	vs, err := r.c.MGet(ctx, full...).Result()
	if err != nil {
		return nil, r.fail("turn notes", err)
	}
	out := make([][]byte, len(keys))
	for i, v := range vs {
		if s, ok := v.(string); ok {
			out[i] = []byte(s)
		}
	}
	return out, nil
}
