package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// responseJSON is a response as its Redis key holds it.
type responseJSON struct {
	Model   string          `json:"model"`
	Object  json.RawMessage `json:"object"`
	Input   json.RawMessage `json:"input"`
	History json.RawMessage `json:"history"`
	Created int64           `json:"created"` // Unix ns
}

// ARGV[4] id, [5] JSON, [6] created ms, [7] TTL ms (0: none), [8] age
// cutoff ms (” for none), [9] count limit (0 for none). One script, so a
// response is indexed and retention applied at once on every replica's
// view.
var luaPutResponse = script(`
local z = p .. 'responses'
local k = p .. 'response:' .. ARGV[4]
if ARGV[7] == '0' then
  redis.call('SET', k, ARGV[5])
else
  redis.call('SET', k, ARGV[5], 'PX', ARGV[7])
end
redis.call('ZADD', z, ARGV[6], ARGV[4])
if ARGV[8] ~= '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. ARGV[8])) do
    redis.call('DEL', p .. 'response:' .. id)
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. ARGV[8])
end
local max = tonumber(ARGV[9])
if max > 0 then
  keepnewest(z, p .. 'response:', max)
end
return 1
`)

var luaDeleteResponse = script(`
redis.call('ZREM', p .. 'responses', ARGV[4])
return redis.call('DEL', p .. 'response:' .. ARGV[4])
`)

// PutResponse is as SQLite.PutResponse; the key expires ResponseMaxAge
// after its CreatedAt, so every replica reads it at once and none after.
func (r *Redis) PutResponse(ctx context.Context, resp Response) error {
	if err := checkResponse(resp); err != nil {
		return fmt.Errorf("store: put response: %w", err)
	}
	now := r.now()
	if resp.CreatedAt.IsZero() {
		resp.CreatedAt = now
	}
	ttl, cutoff := int64(0), ""
	if age := r.opts.ResponseMaxAge; age > 0 {
		if ttl = resp.CreatedAt.Add(age).Sub(now).Milliseconds(); ttl <= 0 {
			return nil // retention would drop it at once
		}
		cutoff = fmt.Sprint(now.Add(-age).UnixMilli())
	}
	b, err := json.Marshal(responseJSON{resp.Model, rawOr(resp.Object), rawOr(resp.Input), rawOr(resp.History), resp.CreatedAt.UnixNano()})
	if err != nil {
		return fmt.Errorf("store: put response: %w", err)
	}
	_, err = r.runAt(ctx, "put response", luaPutResponse, now, resp.ID, b, resp.CreatedAt.UnixMilli(), ttl, cutoff, max(r.opts.MaxResponses, 0))
	return err
}

func rawOr(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// GetResponse is as SQLite.GetResponse.
func (r *Redis) GetResponse(ctx context.Context, id string) (Response, error) {
	if err := r.check(); err != nil {
		return Response{}, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	b, err := r.c.Get(ctx, r.key("response", id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Response{}, ErrNotFound
	}
	if err != nil {
		return Response{}, r.fail("get response", err)
	}
	var j responseJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Response{}, fmt.Errorf("store: get response %s: %w", id, err)
	}
	out := Response{ID: id, Model: j.Model, Object: j.Object, Input: j.Input, History: j.History, CreatedAt: fromNanos(j.Created)}
	// The key's TTL runs on the server's clock; the age is checked on
	// ours too, as SQLite checks it.
	if age := r.opts.ResponseMaxAge; age > 0 && out.CreatedAt.Before(r.now().Add(-age)) {
		return Response{}, ErrNotFound
	}
	return out, nil
}

// DeleteResponse is as SQLite.DeleteResponse.
func (r *Redis) DeleteResponse(ctx context.Context, id string) error {
	v, err := r.runAt(ctx, "delete response", luaDeleteResponse, r.now(), id)
	if err != nil {
		return err
	}
	if n, _ := v.(int64); n == 0 {
		return ErrNotFound
	}
	return nil
}
