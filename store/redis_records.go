package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// voteField is a vote's field in votes:<id>, and a feedback record's
// member: one per (trace, voter), as SQLite's key.
func voteField(traceID, voter string) string { return traceID + "\x00" + voter }

func voteValue(up bool, at time.Time) string {
	v := "0:"
	if up {
		v = "1:"
	}
	return v + strconv.FormatInt(at.UnixNano(), 10)
}

// PutVote is as SQLite.PutVote.
func (r *Redis) PutVote(ctx context.Context, v Vote) error {
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"voter", v.Voter, true}, {"trace id", v.TraceID, false}, {"experience id", v.ExperienceID, true}} {
		if err := checkField(f.name, f.v, f.required); err != nil {
			return fmt.Errorf("store: put vote: %w", err)
		}
	}
	if v.At.IsZero() {
		v.At = r.now()
	}
	res, err := r.run(ctx, "put vote", luaPutVote, v.ExperienceID, voteField(v.TraceID, v.Voter), voteValue(v.Up, v.At))
	if err != nil {
		return err
	}
	if res != int64(1) {
		return fmt.Errorf("store: put vote: %w", ErrNotFound)
	}
	return nil
}

// Votes is as SQLite.Votes.
func (r *Redis) Votes(ctx context.Context, experienceID string) ([]Vote, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	m, err := r.c.HGetAll(ctx, r.key("votes", experienceID)).Result()
	if err != nil {
		return nil, r.fail("votes", err)
	}
	out := make([]Vote, 0, len(m))
	for f, val := range m {
		trace, voter, _ := strings.Cut(f, "\x00")
		up, at, _ := strings.Cut(val, ":")
		n, err := strconv.ParseInt(at, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("store: votes: bad vote %q", val)
		}
		out = append(out, Vote{ExperienceID: experienceID, TraceID: trace, Voter: voter, Up: up == "1", At: fromNanos(n)})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		if a.TraceID != b.TraceID {
			return a.TraceID < b.TraceID
		}
		return a.Voter < b.Voter
	})
	return out, nil
}

// Tally is as SQLite.Tally: each voter's latest vote (by At, then trace
// id) counts once.
func (r *Redis) Tally(ctx context.Context, experienceID string) (Tally, error) {
	vs, err := r.Votes(ctx, experienceID)
	if err != nil {
		return Tally{}, fmt.Errorf("store: tally: %w", err)
	}
	latest := map[string]Vote{}
	for _, v := range vs { // oldest first, ties by trace id: the last one wins
		latest[v.Voter] = v
	}
	var t Tally
	for _, v := range latest {
		if v.Up {
			t.Up++
		} else {
			t.Down++
		}
	}
	return t, nil
}

// RecordFeedback is as SQLite.RecordFeedback: the record, its place in
// the queue and the votes are written by one script. A regrade of a
// record a replica holds (PendingFeedback) leaves its lease alone.
func (r *Redis) RecordFeedback(ctx context.Context, fb Feedback, up bool, experienceIDs []string) error {
	if err := fb.Validate(); err != nil {
		return fmt.Errorf("store: record feedback: %w", err)
	}
	now := r.now()
	args := []any{voteField(fb.TraceID, fb.Voter), fb.TraceID, fb.Voter, fmtFloat(fb.Grade), fb.Comment,
		fb.Correction, now.UnixMilli(), voteValue(up, now)}
	for _, id := range experienceIDs {
		args = append(args, id)
	}
	_, err := r.runAt(ctx, "record feedback", luaRecordFeedback, now, args...)
	return err
}

// FeedbackLease is how long a replica holds the feedback PendingFeedback
// gave it: the others are not given it meanwhile, and if the replica dies
// before marking it, it is given out again after the lease. It bounds one
// distillation (a chat call or two); a record marked pending again (a
// failed attempt) is retried when its lease ends.
const FeedbackLease = 10 * time.Minute

// PendingFeedback is as SQLite.PendingFeedback, except that what it
// returns is claimed for FeedbackLease: replicas sharing the store each
// distil different feedback, and feedback claimed by a replica that died
// is claimed again once its lease is over (the queue is a sorted set scored
// by when each record may next be handed out).
func (r *Redis) PendingFeedback(ctx context.Context, limit int) ([]Feedback, error) {
	if limit <= 0 {
		limit = 16
	}
	now := r.now()
	v, err := r.runAt(ctx, "pending feedback", luaClaimFeedback, now, now.UnixMilli(), FeedbackLease.Milliseconds(), limit)
	if err != nil {
		return nil, err
	}
	var members []string
	list, _ := v.([]any)
	for _, m := range list {
		if s, ok := m.(string); ok {
			members = append(members, s)
		}
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	cmds := make([]*redis.MapStringStringCmd, len(members))
	if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			cmds[i] = p.HGetAll(ctx, r.key("fb", m))
		}
		return nil
	}); err != nil {
		return nil, r.fail("pending feedback", err)
	}
	out := make([]Feedback, 0, len(members))
	for _, c := range cmds {
		m := c.Val()
		if m["state"] != string(FeedbackPending) {
			continue
		}
		f := Feedback{TraceID: m["trace"], Voter: m["voter"], Comment: m["comment"], Correction: m["correction"], State: FeedbackPending}
		f.Grade, _ = strconv.ParseFloat(m["grade"], 64)
		f.Attempts, _ = strconv.Atoi(m["attempts"])
		cr, _ := strconv.ParseInt(m["created_at"], 10, 64)
		up, _ := strconv.ParseInt(m["updated_at"], 10, 64)
		f.CreatedAt, f.UpdatedAt = fromNanos(cr), fromNanos(up)
		out = append(out, f)
	}
	return out, nil
}

// MarkFeedback is as SQLite.MarkFeedback. Marking a record regraded since
// it was read ends the lease the read took, so the regrade is given out at
// once (a regrade itself never shortens a lease: see RecordFeedback).
func (r *Redis) MarkFeedback(ctx context.Context, traceID, voter string, updatedAt time.Time, state FeedbackState) error {
	switch state {
	case FeedbackPending, FeedbackDone, FeedbackSkipped, FeedbackFailed:
	default:
		return fmt.Errorf("store: mark feedback: %w: state %q", ErrInvalid, state)
	}
	now := r.now()
	_, err := r.runAt(ctx, "mark feedback", luaMarkFeedback, now, voteField(traceID, voter),
		strconv.FormatInt(updatedAt.UnixNano(), 10), string(state), FeedbackLease.Milliseconds(), now.UnixMilli())
	return err
}

// traceJSON is a trace as stored.
type traceJSON struct {
	Query         string   `json:"query"`
	Domain        string   `json:"domain"`
	ExperienceIDs []string `json:"experience_ids"`
	Model         string   `json:"model"`
	Answer        string   `json:"answer"`
	CreatedAt     int64    `json:"created_at"`
}

// PutTrace is as SQLite.PutTrace; the trace key expires TraceMaxAge after
// its CreatedAt.
func (r *Redis) PutTrace(ctx context.Context, t Trace) error { return r.PutTraces(ctx, []Trace{t}) }

// PutTraces is as SQLite.PutTraces: one script stores them all and
// applies retention.
func (r *Redis) PutTraces(ctx context.Context, ts []Trace) error {
	if len(ts) == 0 {
		return nil
	}
	now := r.now()
	args := r.pruneArgs(now)
	for i, t := range ts {
		if err := checkField("trace id", t.ID, true); err != nil {
			return fmt.Errorf("store: put traces: trace %d: %w", i, err)
		}
		if t.ExperienceIDs == nil {
			t.ExperienceIDs = []string{}
		}
		if t.CreatedAt.IsZero() {
			t.CreatedAt = now
		}
		ttl := int64(0)
		if age := r.opts.TraceMaxAge; age > 0 {
			if ttl = t.CreatedAt.Add(age).Sub(now).Milliseconds(); ttl <= 0 {
				continue // retention would drop it at once
			}
		}
		b, err := json.Marshal(traceJSON{t.Query, t.Domain, t.ExperienceIDs, t.Model, t.Answer, t.CreatedAt.UnixNano()})
		if err != nil {
			return fmt.Errorf("store: put traces: %w", err)
		}
		args = append(args, t.ID, b, t.CreatedAt.UnixMilli(), ttl)
	}
	_, err := r.runAt(ctx, "put traces", luaPutTraces, now, args...)
	return err
}

// pruneArgs are luaPrune's arguments as of now.
func (r *Redis) pruneArgs(now time.Time) []any {
	cutoff := ""
	if age := r.opts.TraceMaxAge; age > 0 {
		cutoff = strconv.FormatInt(now.Add(-age).UnixMilli(), 10)
	}
	max := max(r.opts.MaxTraces, 0)
	return []any{cutoff, max, max - max/100}
}

// GetTrace is as SQLite.GetTrace.
func (r *Redis) GetTrace(ctx context.Context, id string) (Trace, error) {
	if err := r.check(); err != nil {
		return Trace{}, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	b, err := r.c.Get(ctx, r.key("trace", id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Trace{}, fmt.Errorf("store: get trace: %w", ErrNotFound)
	}
	if err != nil {
		return Trace{}, r.fail("get trace", err)
	}
	var j traceJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Trace{}, fmt.Errorf("store: get trace: %w", err)
	}
	return Trace{ID: id, Query: j.Query, Domain: j.Domain, ExperienceIDs: j.ExperienceIDs, Model: j.Model,
		Answer: j.Answer, CreatedAt: fromNanos(j.CreatedAt)}, nil
}

// PruneTraces is as SQLite.PruneTraces.
func (r *Redis) PruneTraces(ctx context.Context, now time.Time) (int, error) {
	v, err := r.runAt(ctx, "prune traces", luaPruneTraces, now, r.pruneArgs(now)...)
	if err != nil {
		return 0, err
	}
	n, _ := v.(int64)
	return int(n), nil
}

// CountTraces is as SQLite.CountTraces: traces past their age are not
// counted, whether or not their keys have expired yet.
func (r *Redis) CountTraces(ctx context.Context) (int, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	lo := "-inf"
	if age := r.opts.TraceMaxAge; age > 0 {
		lo = strconv.FormatInt(r.now().Add(-age).UnixMilli(), 10)
	}
	n, err := r.c.ZCount(ctx, r.key("traces"), lo, "+inf").Result()
	if err != nil {
		return 0, r.fail("count traces", err)
	}
	return int(n), nil
}
