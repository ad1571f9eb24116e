package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ListTraces is as SQLite.ListTraces, except that traces stored in the
// same millisecond come in reverse id order (Redis keeps no insertion
// order). The cursor is "ms.id" of the page's last trace.
func (r *Redis) ListTraces(ctx context.Context, o TraceListOptions) ([]ListedTrace, string, error) {
	if err := r.check(); err != nil {
		return nil, "", err
	}
	limit := o.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, MaxTraceList)
	ctx, cancel := r.bound(ctx)
	defer cancel()
	lo := "-inf"
	if age := r.opts.TraceMaxAge; age > 0 {
		lo = strconv.FormatInt(r.now().Add(-age).UnixMilli(), 10)
	}
	z := r.key("traces")
	var ids []string
	hi := "+inf"
	if o.Before != "" {
		ms, id, ok := strings.Cut(o.Before, ".")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil || id == "" || strconv.FormatInt(n, 10) != ms {
			return nil, "", fmt.Errorf("store: list traces: %w: bad cursor", ErrInvalid)
		}
		// The rest of the cursor's millisecond first: its traces below
		// the cursor's id, then the earlier milliseconds.
		same, err := r.c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: z, Start: ms, Stop: ms, ByScore: true, Rev: true}).Result()
		if err != nil {
			return nil, "", r.fail("list traces", err)
		}
		for _, m := range same {
			if m < id && len(ids) <= limit {
				ids = append(ids, m)
			}
		}
		hi = "(" + ms
	}
	if len(ids) <= limit {
		more, err := r.c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: z, Start: hi, Stop: lo, ByScore: true, Rev: true, Count: int64(limit + 1 - len(ids))}).Result()
		if err != nil {
			return nil, "", r.fail("list traces", err)
		}
		ids = append(ids, more...)
	}
	out, err := r.listedTraces(ctx, ids[:min(len(ids), limit)])
	if err != nil {
		return nil, "", err
	}
	if len(ids) <= limit || len(out) == 0 {
		return out, "", nil
	}
	last := out[len(out)-1]
	return out, fmt.Sprintf("%d.%s", last.CreatedAt.UnixMilli(), last.ID), nil
}

// listedTraces loads the traces of ids with their feedback summaries,
// leaving out those whose keys expired.
func (r *Redis) listedTraces(ctx context.Context, ids []string) ([]ListedTrace, error) {
	gets := make([]*redis.StringCmd, len(ids))
	fbs := make([]*redis.StringSliceCmd, len(ids))
	if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			gets[i] = p.Get(ctx, r.key("trace", id))
			fbs[i] = p.SMembers(ctx, r.key("tracefb", id))
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, r.fail("list traces", err)
	}
	out := make([]ListedTrace, 0, len(ids))
	grades := make([][]*redis.StringCmd, len(ids))
	if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range ids {
			for _, m := range fbs[i].Val() {
				grades[i] = append(grades[i], p.HGet(ctx, r.key("fb", m), "grade"))
			}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, r.fail("list traces", err)
	}
	for i, id := range ids {
		b, err := gets[i].Bytes()
		if err != nil {
			continue // expired since the index was read
		}
		var j traceJSON
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, fmt.Errorf("store: list traces: %w", err)
		}
		lt := ListedTrace{Trace: Trace{ID: id, Query: j.Query, Domain: j.Domain, ExperienceIDs: j.ExperienceIDs, Model: j.Model,
			Answer: j.Answer, CreatedAt: fromNanos(j.CreatedAt)}}
		var sum float64
		for _, g := range grades[i] {
			if v, err := g.Float64(); err == nil {
				sum += v
				lt.Grades++
			}
		}
		if lt.Grades > 0 {
			lt.Grade = sum / float64(lt.Grades)
		}
		out = append(out, lt)
	}
	return out, nil
}
