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

// run runs a write script with the common arguments (prefix, stream
// bound, now) before args, within the store's timeout, and waits for the
// append-only file where the server needs telling.
func (r *Redis) run(ctx context.Context, op string, s *redis.Script, args ...any) (any, error) {
	return r.runAt(ctx, op, s, r.now(), args...)
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// PutExperience is as SQLite.PutExperience.
func (r *Redis) PutExperience(ctx context.Context, e Experience) (Experience, bool, error) {
	got, created, err := r.PutExperiences(ctx, []Experience{e})
	if err != nil {
		return Experience{}, false, err
	}
	return got[0], created[0], nil
}

// PutExperiences is as SQLite.PutExperiences: all are written, in one
// script, or none.
func (r *Redis) PutExperiences(ctx context.Context, es []Experience) ([]Experience, []bool, error) {
	if len(es) == 0 {
		return nil, nil, nil
	}
	now := r.now().UTC()
	// The script stamps now from its ARGV[3]; keep the records in step.
	now = time.Unix(0, now.UnixNano()).UTC()
	prepared := make([]Experience, len(es))
	args := make([]any, 0, 12*len(es))
	for i, e := range es {
		e, err := e.prepare()
		if err != nil {
			return nil, nil, fmt.Errorf("store: put experience %d: %w", i, err)
		}
		e.CreatedAt, e.UpdatedAt = now, now
		if len(e.Code) == 0 {
			e.Code, e.Space = nil, ""
		} else {
			e.Code = append([]byte(nil), e.Code...)
		}
		prepared[i] = e
		args = append(args, e.ID, e.Text, e.Domain, fmtFloat(e.Confidence), string(e.Status),
			e.SourceModel, e.SourceNode, e.TraceID, e.Code, e.Space, fmtFloat(e.Prior), e.Key)
	}
	v, err := r.runAt(ctx, "put experiences", luaPutExperiences, now, args...)
	if err != nil {
		return nil, nil, err
	}
	flags, _ := v.([]any)
	if len(flags) != len(es) {
		return nil, nil, fmt.Errorf("store: put experiences: script returned %d results for %d", len(flags), len(es))
	}
	created := make([]bool, len(es))
	for i, f := range flags {
		if created[i] = f == int64(1); created[i] {
			continue
		}
		got, err := r.GetExperience(ctx, prepared[i].ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, nil, err
		}
		if err == nil {
			prepared[i] = got
		}
	}
	return prepared, created, nil
}

// runAt is run with a given time instead of the clock's.
func (r *Redis) runAt(ctx context.Context, op string, s *redis.Script, now time.Time, args ...any) (any, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	all := append([]any{r.opts.Prefix, r.opts.KeepChanges, now.UnixNano()}, args...)
	if !r.dur.WaitAOF {
		v, err := s.Run(ctx, r.w, nil, all...).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, r.fail(op, err)
		}
		return v, nil
	}
	var ev *redis.Cmd
	aofErr := r.durably(ctx, op, func(p redis.Pipeliner) { ev = s.Eval(ctx, p, nil, all...) })
	v, err := ev.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, r.fail(op, err)
	}
	if aofErr != nil {
		return nil, aofErr
	}
	return v, nil
}

// decodeExperience reads an experience hash.
func decodeExperience(id string, m map[string]string) (Experience, error) {
	e := Experience{
		ID: id, Text: m["text"], Domain: m["domain"], Status: Status(m["status"]),
		SourceModel: m["source_model"], SourceNode: m["source_node"], TraceID: m["trace_id"], Space: m["space"],
	}
	var err error
	if e.Confidence, err = strconv.ParseFloat(m["confidence"], 64); err != nil {
		return Experience{}, fmt.Errorf("experience %.16s: confidence: %w", id, err)
	}
	e.Key, e.Prior = m["key"], e.Confidence // records written before priors: as SQLite's migration 7
	if p, ok := m["prior"]; ok {
		if e.Prior, err = strconv.ParseFloat(p, 64); err != nil {
			return Experience{}, fmt.Errorf("experience %.16s: prior: %w", id, err)
		}
	}
	c, err1 := strconv.ParseInt(m["created_at"], 10, 64)
	u, err2 := strconv.ParseInt(m["updated_at"], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return Experience{}, fmt.Errorf("experience %.16s: times: %w", id, err)
	}
	e.CreatedAt, e.UpdatedAt = fromNanos(c), fromNanos(u)
	if code := m["code"]; code != "" {
		e.Code = []byte(code)
	} else {
		e.Space = ""
	}
	return e, nil
}

// pairs turns a flat HGETALL reply from a script into a map.
func pairs(v any) map[string]string {
	flat, _ := v.([]any)
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		s, _ := flat[i+1].(string)
		m[k] = s
	}
	return m
}

// GetExperience is as SQLite.GetExperience.
func (r *Redis) GetExperience(ctx context.Context, id string) (Experience, error) {
	es, err := r.GetExperiences(ctx, []string{id})
	if err != nil {
		return Experience{}, fmt.Errorf("store: get experience: %w", err)
	}
	if len(es) == 0 {
		return Experience{}, fmt.Errorf("store: get experience %.16s: %w", id, ErrNotFound)
	}
	return es[0], nil
}

// GetExperiences is as SQLite.GetExperiences: one pipelined round trip
// per 500 ids.
func (r *Redis) GetExperiences(ctx context.Context, ids []string) ([]Experience, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	out := make([]Experience, 0, len(ids))
	for start := 0; start < len(ids); start += maxBatch {
		chunk := ids[start:min(start+maxBatch, len(ids))]
		got, err := r.load(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("store: get experiences: %w", err)
		}
		for _, e := range got {
			if !seen[e.ID] {
				seen[e.ID] = true
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// load reads the experiences with ids in one pipeline, in order, skipping
// those not stored.
func (r *Redis) load(ctx context.Context, ids []string) ([]Experience, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, r.key("exp", id))
		}
		return nil
	})
	if err != nil {
		return nil, r.fail("load", err)
	}
	out := make([]Experience, 0, len(ids))
	for i, c := range cmds {
		m := c.Val()
		if len(m) == 0 {
			continue
		}
		e, err := decodeExperience(ids[i], m)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// DeleteExperience is as SQLite.DeleteExperience.
func (r *Redis) DeleteExperience(ctx context.Context, id string) error {
	v, err := r.run(ctx, "delete experience", luaDeleteExperience, id)
	if err != nil {
		return err
	}
	if v != int64(1) {
		return fmt.Errorf("store: delete experience %.16s: %w", id, ErrNotFound)
	}
	return nil
}

// UpdateExperience is as SQLite.UpdateExperience.
func (r *Redis) UpdateExperience(ctx context.Context, id string, u Update) (Experience, error) {
	args := []any{id, "0", "", "0", "", "0", "", ""}
	if u.Confidence != nil {
		if err := checkConfidence(*u.Confidence); err != nil {
			return Experience{}, fmt.Errorf("store: update experience: %w", err)
		}
		args[1], args[2] = "1", fmtFloat(*u.Confidence)
	}
	if u.Status != nil {
		if err := checkStatus(*u.Status); err != nil {
			return Experience{}, fmt.Errorf("store: update experience: %w", err)
		}
		args[3], args[4] = "1", string(*u.Status)
	}
	if u.Code != nil {
		if err := checkCode(u.Code, u.Space); err != nil {
			return Experience{}, fmt.Errorf("store: update experience: %w", err)
		}
		args[5] = "1"
		if len(u.Code) > 0 {
			args[6], args[7] = u.Code, u.Space
		}
	}
	v, err := r.run(ctx, "update experience", luaUpdateExperience, args...)
	if err != nil {
		return Experience{}, err
	}
	m := pairs(v)
	if len(m) == 0 {
		return Experience{}, fmt.Errorf("store: update experience %.16s: %w", id, ErrNotFound)
	}
	e, err := decodeExperience(id, m)
	if err != nil {
		return Experience{}, fmt.Errorf("store: update experience: %w", err)
	}
	return e, nil
}

// ids returns up to n ids after the given one, in byte order.
func (r *Redis) ids(ctx context.Context, after string, n int) ([]string, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	lo := "-"
	if after != "" {
		lo = "(" + after
	}
	ids, err := r.c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: r.key("exps"), Start: lo, Stop: "+", ByLex: true, Count: int64(n)}).Result()
	if err != nil {
		return nil, r.fail("list ids", err)
	}
	return ids, nil
}

// ListExperiences is as SQLite.ListExperiences.
func (r *Redis) ListExperiences(ctx context.Context, o ListOptions) ([]Experience, string, error) {
	if err := r.check(); err != nil {
		return nil, "", err
	}
	o, err := o.prepare()
	if err != nil {
		return nil, "", err
	}
	limit, prefix := o.Limit, o.DomainPrefix
	var out []Experience
	after := o.After
	for len(out) <= limit {
		ids, err := r.ids(ctx, after, maxBatch)
		if err != nil {
			return nil, "", fmt.Errorf("store: list experiences: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		after = ids[len(ids)-1]
		es, err := r.load(ctx, ids)
		if err != nil {
			return nil, "", fmt.Errorf("store: list experiences: %w", err)
		}
		for _, e := range es {
			if strings.HasPrefix(e.Domain, prefix) && (o.Status == "" || e.Status == o.Status) {
				out = append(out, e)
			}
		}
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// EachExperience is as SQLite.EachExperience, reading 500 records a
// round trip.
func (r *Redis) EachExperience(ctx context.Context, fn func(Experience) error) error {
	if err := r.check(); err != nil {
		return err
	}
	after := ""
	for {
		ids, err := r.ids(ctx, after, maxBatch)
		if err != nil {
			return fmt.Errorf("store: each experience: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		after = ids[len(ids)-1]
		es, err := r.load(ctx, ids)
		if err != nil {
			return fmt.Errorf("store: each experience: %w", err)
		}
		for _, e := range es {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}
