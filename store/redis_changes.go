package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis change log is a stream, changes. Every script that writes an
// experience increments the counter seq and adds the entry "<seq>-0"
// {id} in the same step, so entry ids are the integers 1, 2, 3, ... with
// no gaps, exactly like SQLite's change log seq: a follower keeps an int64
// cursor either way, and a first entry past cursor+1 means the stream was
// trimmed past it. Each write trims the stream to about KeepChanges
// entries (XADD MAXLEN ~); PruneChanges trims it exactly.

// Changes is as SQLite.Changes. The range and the counter are read in one
// MULTI, so "nothing after the cursor" and "trimmed past the cursor" are
// told apart even while others write.
func (r *Redis) Changes(ctx context.Context, after int64, limit int) ([]string, int64, error) {
	if err := r.check(); err != nil {
		return nil, 0, err
	}
	if limit <= 0 {
		limit = DefaultChangesLimit
	}
	limit = min(limit, maxChangesLimit)
	ctx, cancel := r.bound(ctx)
	defer cancel()
	var rng *redis.XMessageSliceCmd
	var seq *redis.StringCmd
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		rng = p.XRangeN(ctx, r.key("changes"), "("+strconv.FormatInt(after, 10)+"-0", "+", int64(limit))
		seq = p.Get(ctx, r.key("seq"))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, r.fail("changes", err)
	}
	head, err := seq.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("store: changes: counter: %w", err)
	}
	if head < after {
		// The counter went back: the server lost its data (no append-only
		// file) or was flushed. Nothing after the cursor can be trusted.
		return nil, 0, fmt.Errorf("store: changes after %d, but the log ends at %d: %w", after, head, ErrChangesPruned)
	}
	last := after
	var ids []string
	seen := map[string]bool{}
	for _, m := range rng.Val() {
		n, err := entrySeq(m.ID)
		if err != nil {
			return nil, 0, fmt.Errorf("store: changes: %w", err)
		}
		if last == after && n != after+1 {
			return nil, 0, fmt.Errorf("store: changes after %d, oldest kept is %d: %w", after, n, ErrChangesPruned)
		}
		last = n
		id, _ := m.Values["id"].(string)
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if last == after && head > after {
		return nil, 0, fmt.Errorf("store: changes after %d, stream trimmed to none of the %d since: %w", after, head-after, ErrChangesPruned)
	}
	return ids, last, nil
}

func entrySeq(id string) (int64, error) {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad stream entry id %q", id)
	}
	return n, nil
}

// LastChange is as SQLite.LastChange: the counter, which trimming never
// lowers.
func (r *Redis) LastChange(ctx context.Context) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	n, err := r.c.Get(ctx, r.key("seq")).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, r.fail("last change", err)
	}
	return n, nil
}

// PruneChanges is as SQLite.PruneChanges: it trims the stream to exactly
// keepRows entries.
func (r *Redis) PruneChanges(ctx context.Context, keepRows int) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	if keepRows <= 0 {
		keepRows = DefaultKeepChanges
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	n, err := r.c.XTrimMaxLen(ctx, r.key("changes"), int64(keepRows)).Result()
	if err != nil {
		return 0, r.fail("prune changes", err)
	}
	return n, nil
}

// maxBlock bounds one blocking XREAD: go-redis does not interrupt a
// blocked read when its context is cancelled, so a wait is made of short
// blocks.
const maxBlock = 250 * time.Millisecond

// WaitChanges blocks until the change stream has an entry after the
// cursor, up to wait or until ctx is done, and reports whether one came.
// It lets a follower apply a change within a round trip of its write
// instead of at its next poll. It reads with plain XREAD (every replica
// sees every change, so no consumer group) in blocks of at most 250ms.
func (r *Redis) WaitChanges(ctx context.Context, after int64, wait time.Duration) (bool, error) {
	if err := r.check(); err != nil {
		return false, err
	}
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return false, nil
		}
		block := min(left, maxBlock)
		if block < time.Millisecond {
			block = time.Millisecond // 0 would block for ever
		}
		bctx, cancel := context.WithTimeout(ctx, block+r.opts.Timeout)
		res, err := r.c.XRead(bctx, &redis.XReadArgs{
			Streams: []string{r.key("changes"), strconv.FormatInt(after, 10) + "-0"},
			Count:   1,
			Block:   block,
		}).Result()
		cancel()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return false, nil
			}
			return false, r.fail("wait changes", err)
		case len(res) > 0 && len(res[0].Messages) > 0:
			return true, nil
		}
	}
}
