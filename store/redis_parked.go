package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Feedback parked for traces not stored yet. Replicas behind one load
// balancer hand out trace ids as they answer, and store each trace a
// moment later, in batches: a grade that reaches another replica in
// between finds no trace. It is parked, under
//
//	parked:<trace>   list: JSON feedback records, with the parking TTL
//	parked           sorted set: traces with parked feedback, by expiry (ms)
//
// and whichever replica stores the trace takes it (TakeParked) and records
// it, as the replica that parked it does should the trace be stored
// meanwhile.
const (
	// ParkedFeedbackTTL is how long parked feedback waits for its trace:
	// far longer than a trace takes to be stored, even from a replica's
	// spool after the store was away a while.
	ParkedFeedbackTTL = 10 * time.Minute
	// MaxParkedTraces bounds the traces with feedback parked at once, and
	// MaxParkedPerTrace the records parked per trace.
	MaxParkedTraces   = 10000
	MaxParkedPerTrace = 16
)

// ErrParkingFull reports parked feedback at MaxParkedTraces or
// MaxParkedPerTrace: the client may send it again shortly.
var ErrParkingFull = errors.New("store: parked feedback full")

// ARGV[4]: trace id, ARGV[5]: record, ARGV[6]: expiry (Unix ms), ARGV[7]:
// TTL (ms), ARGV[8]: max traces, ARGV[9]: max per trace. Returns 1 when
// parked, 0 when full.
var luaParkFeedback = script(`
local z = p .. 'parked'
redis.call('ZREMRANGEBYSCORE', z, '-inf', tonumber(now) / 1000000)
local k = p .. 'parked:' .. ARGV[4]
if redis.call('ZSCORE', z, ARGV[4]) == false and redis.call('ZCARD', z) >= tonumber(ARGV[8]) then return 0 end
if redis.call('LLEN', k) >= tonumber(ARGV[9]) then return 0 end
redis.call('RPUSH', k, ARGV[5])
redis.call('PEXPIRE', k, ARGV[7])
redis.call('ZADD', z, ARGV[6], ARGV[4])
return 1
`)

// ARGV[4:]: trace ids. Returns, per id with parked feedback, the id and
// its records, taken: no other caller gets them.
var luaTakeParked = script(`
local z = p .. 'parked'
local out = {}
for i = 4, #ARGV do
  local k = p .. 'parked:' .. ARGV[i]
  local rs = redis.call('LRANGE', k, 0, -1)
  if #rs > 0 then
    redis.call('DEL', k)
    for _, r in ipairs(rs) do out[#out + 1] = r end
  end
  redis.call('ZREM', z, ARGV[i])
end
return out
`)

type parkedJSON struct {
	TraceID    string  `json:"trace_id"`
	Voter      string  `json:"voter"`
	Grade      float64 `json:"grade"`
	Comment    string  `json:"comment,omitempty"`
	Correction string  `json:"correction,omitempty"`
	At         int64   `json:"at"` // Unix ms
}

// ParkFeedback keeps fb, whose trace is not stored yet, for whichever
// replica stores the trace within ParkedFeedbackTTL (see TakeParked);
// ErrParkingFull past the bounds.
func (r *Redis) ParkFeedback(ctx context.Context, fb Feedback) error {
	if err := fb.Validate(); err != nil {
		return fmt.Errorf("store: park feedback: %w", err)
	}
	now := r.now()
	b, err := json.Marshal(parkedJSON{fb.TraceID, fb.Voter, fb.Grade, fb.Comment, fb.Correction, now.UnixMilli()})
	if err != nil {
		return fmt.Errorf("store: park feedback: %w", err)
	}
	v, err := r.runAt(ctx, "park feedback", luaParkFeedback, now, fb.TraceID, b,
		now.Add(ParkedFeedbackTTL).UnixMilli(), ParkedFeedbackTTL.Milliseconds(), MaxParkedTraces, MaxParkedPerTrace)
	if err != nil {
		return err
	}
	if n, _ := v.(int64); n != 1 {
		return ErrParkingFull
	}
	return nil
}

// TakeParked returns the feedback parked for the traces ids and removes
// it: each record is taken once, by one caller.
func (r *Redis) TakeParked(ctx context.Context, ids []string) ([]Feedback, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	v, err := r.runAt(ctx, "take parked feedback", luaTakeParked, r.now(), args...)
	if err != nil {
		return nil, err
	}
	rs, _ := v.([]any)
	out := make([]Feedback, 0, len(rs))
	for _, x := range rs {
		s, _ := x.(string)
		var j parkedJSON
		if err := json.Unmarshal([]byte(s), &j); err != nil {
			continue // not ours to read: dropped with the key
		}
		out = append(out, Feedback{TraceID: j.TraceID, Voter: j.Voter, Grade: j.Grade, Comment: j.Comment,
			Correction: j.Correction, CreatedAt: time.UnixMilli(j.At)})
	}
	return out, nil
}
