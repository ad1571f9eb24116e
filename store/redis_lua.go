package store

import "github.com/redis/go-redis/v9"

// The Redis store's writes are Lua scripts: each runs atomically, so a
// record, the sets that index it and its change stream entry are written
// together or not at all. Every script takes the key prefix as ARGV[1]
// and, where it logs changes, the stream's approximate length bound as
// ARGV[2] and the time (Unix nanoseconds) as ARGV[3]. Scripts check what
// they need before their first write: Redis does not roll a script back.
//
// Keys (after the prefix):
//
//	exp:<id>         hash: an experience's fields
//	exps             sorted set, all scores 0: every id, in byte order
//	codes:<space>    set: ids with a code in space
//	acodes:<space>   set: active ids with a code in space
//	pending:<space>  hash: id → pending code for space
//	pendof           hash: id → the space of its pending code
//	space:<name>     string: a space's mean, float32 little-endian
//	votes:<id>       hash: "<trace>\x00<voter>" → "1:<nanos>" or "0:<nanos>"
//	fb:<trace>\x00<voter>  hash: a feedback record
//	fbpending        sorted set: pending feedback, by update time (ms)
//	trace:<id>       string: a trace as JSON, with the trace TTL
//	traces           sorted set: trace ids by creation time (ms)
//	seq              counter: the last change seq
//	changes          stream: one entry "<seq>-0" {id} per experience write
const luaPrelude = `
local p = ARGV[1]
local keep = ARGV[2]
local now = ARGV[3]
local function logchange(id)
  local seq = redis.call('INCR', p .. 'seq')
  redis.call('XADD', p .. 'changes', 'MAXLEN', '~', keep, seq .. '-0', 'id', id)
end
local function reindex(id, old, new, active)
  if old and old ~= '' then
    redis.call('SREM', p .. 'codes:' .. old, id)
    redis.call('SREM', p .. 'acodes:' .. old, id)
  end
  if new ~= '' then
    redis.call('SADD', p .. 'codes:' .. new, id)
    if active then
      redis.call('SADD', p .. 'acodes:' .. new, id)
    else
      redis.call('SREM', p .. 'acodes:' .. new, id)
    end
  end
end
local function isactive(k) return redis.call('HGET', k, 'status') == 'active' end
-- keepnewest keeps the newest max members of the sorted set z, deleting
-- the key keys .. member of each member it drops.
local function keepnewest(z, keys, max)
  local c = redis.call('ZCARD', z)
  if c > max then
    for _, m in ipairs(redis.call('ZRANGE', z, 0, c - max - 1)) do
      redis.call('DEL', keys .. m)
    end
    redis.call('ZREMRANGEBYRANK', z, 0, c - max - 1)
  end
end
`

func script(body string) *redis.Script { return redis.NewScript(luaPrelude + body) }

// ARGV[4:]: per experience id, text, domain, confidence, status,
// source_model, source_node, trace_id, code, space, prior, key. Returns 1 per
// experience created, 0 per one already stored.
var luaPutExperiences = script(`
local out = {}
for i = 4, #ARGV, 12 do
  local id = ARGV[i]
  local k = p .. 'exp:' .. id
  if redis.call('EXISTS', k) == 1 then
    out[#out + 1] = 0
  else
    redis.call('HSET', k, 'text', ARGV[i+1], 'domain', ARGV[i+2], 'confidence', ARGV[i+3], 'status', ARGV[i+4],
      'source_model', ARGV[i+5], 'source_node', ARGV[i+6], 'trace_id', ARGV[i+7], 'code', ARGV[i+8],
      'space', ARGV[i+9], 'prior', ARGV[i+10], 'key', ARGV[i+11], 'created_at', now, 'updated_at', now)
    redis.call('ZADD', p .. 'exps', 0, id)
    reindex(id, false, ARGV[i+9], ARGV[i+4] == 'active')
    logchange(id)
    out[#out + 1] = 1
  end
end
return out
`)

// ARGV[4:]: id, has confidence, confidence, has status, status, has code,
// code, space. Returns the updated hash, or an empty array when the id is
// not stored.
var luaUpdateExperience = script(`
local id = ARGV[4]
local k = p .. 'exp:' .. id
if redis.call('EXISTS', k) == 0 then return {} end
local old = redis.call('HGET', k, 'space')
local space = old
redis.call('HSET', k, 'updated_at', now)
if ARGV[5] == '1' then redis.call('HSET', k, 'confidence', ARGV[6]) end
if ARGV[7] == '1' then redis.call('HSET', k, 'status', ARGV[8]) end
if ARGV[9] == '1' then
  redis.call('HSET', k, 'code', ARGV[10], 'space', ARGV[11])
  space = ARGV[11]
end
reindex(id, old, space, isactive(k))
logchange(id)
return redis.call('HGETALL', k)
`)

// ARGV[4]: id. Returns 1 if it was deleted, 0 if it was not stored.
var luaDeleteExperience = script(`
local id = ARGV[4]
local k = p .. 'exp:' .. id
if redis.call('EXISTS', k) == 0 then return 0 end
reindex(id, redis.call('HGET', k, 'space'), '', false)
redis.call('DEL', k, p .. 'votes:' .. id)
redis.call('ZREM', p .. 'exps', id)
local ps = redis.call('HGET', p .. 'pendof', id)
if ps then
  redis.call('HDEL', p .. 'pending:' .. ps, id)
  redis.call('HDEL', p .. 'pendof', id)
end
logchange(id)
return 1
`)

// ARGV[4:]: per update id, code, space. Ids not stored are skipped.
var luaSetCodes = script(`
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  local k = p .. 'exp:' .. id
  if redis.call('EXISTS', k) == 1 then
    local old = redis.call('HGET', k, 'space')
    redis.call('HSET', k, 'code', ARGV[i+1], 'space', ARGV[i+2], 'updated_at', now)
    reindex(id, old, ARGV[i+2], isactive(k))
    logchange(id)
  end
end
return 0
`)

// ARGV[4:]: per update id, code, space. Ids not stored are skipped.
var luaPutPendingCodes = script(`
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('EXISTS', p .. 'exp:' .. id) == 1 then
    local old = redis.call('HGET', p .. 'pendof', id)
    if old then redis.call('HDEL', p .. 'pending:' .. old, id) end
    redis.call('HSET', p .. 'pendof', id, ARGV[i+2])
    redis.call('HSET', p .. 'pending:' .. ARGV[i+2], id, ARGV[i+1])
  end
end
return 0
`)

// ARGV[4]: space. Returns the number of experiences with neither a code
// nor a pending code in space (nothing is changed then), or 0 once the
// pending codes of space are committed; other spaces' stay pending.
var luaCommitPendingCodes = script(`
local sp = ARGV[4]
local ids = redis.call('HKEYS', p .. 'pending:' .. sp)
local extra = 0
for _, id in ipairs(ids) do
  if redis.call('SISMEMBER', p .. 'codes:' .. sp, id) == 0 and redis.call('EXISTS', p .. 'exp:' .. id) == 1 then
    extra = extra + 1
  end
end
local missing = redis.call('ZCARD', p .. 'exps') - redis.call('SCARD', p .. 'codes:' .. sp) - extra
if missing > 0 then return missing end
for _, id in ipairs(ids) do
  local k = p .. 'exp:' .. id
  if redis.call('EXISTS', k) == 1 then
    local old = redis.call('HGET', k, 'space')
    redis.call('HSET', k, 'code', redis.call('HGET', p .. 'pending:' .. sp, id), 'space', sp, 'updated_at', now)
    reindex(id, old, sp, isactive(k))
    logchange(id)
  end
end
for _, id in ipairs(ids) do
  if redis.call('HGET', p .. 'pendof', id) == sp then redis.call('HDEL', p .. 'pendof', id) end
end
redis.call('DEL', p .. 'pending:' .. sp)
return 0
`)

// ARGV[4:]: experience id, vote field, vote value. Returns 0 if the
// experience is not stored.
var luaPutVote = script(`
if redis.call('EXISTS', p .. 'exp:' .. ARGV[4]) == 0 then return 0 end
redis.call('HSET', p .. 'votes:' .. ARGV[4], ARGV[5], ARGV[6])
return 1
`)

// ARGV[4:]: member ("<trace>\x00<voter>"), trace, voter, grade, comment,
// correction, now in ms, vote value, then the experience ids voted on. A
// record a replica holds (its time in fbpending is a lease's end) keeps
// that time: the regrade is given out when the lease ends, not to a second
// replica while the first still distils the grade before.
var luaRecordFeedback = script(`
local m = ARGV[4]
local k = p .. 'fb:' .. m
local created = redis.call('HGET', k, 'created_at') or now
redis.call('HSET', k, 'trace', ARGV[5], 'voter', ARGV[6], 'grade', ARGV[7], 'comment', ARGV[8],
  'correction', ARGV[9], 'state', 'pending', 'attempts', 0, 'created_at', created, 'updated_at', now)
local at = redis.call('ZSCORE', p .. 'fbpending', m)
if not at or tonumber(at) < tonumber(ARGV[10]) then redis.call('ZADD', p .. 'fbpending', ARGV[10], m) end
redis.call('SADD', p .. 'tracefb:' .. ARGV[5], m)
for i = 12, #ARGV do
  if redis.call('EXISTS', p .. 'exp:' .. ARGV[i]) == 1 then
    redis.call('HSET', p .. 'votes:' .. ARGV[i], m, ARGV[11])
  end
end
return 1
`)

// ARGV[4:]: now in ms, the lease in ms, how many. Claims up to that many
// feedback records whose time has come, oldest first, by moving each one's
// time to the lease's end; returns their members.
var luaClaimFeedback = script(`
local z = p .. 'fbpending'
local at = tonumber(ARGV[4])
local ms = redis.call('ZRANGEBYSCORE', z, '-inf', at, 'LIMIT', 0, tonumber(ARGV[6]))
for _, m in ipairs(ms) do redis.call('ZADD', z, 'XX', at + tonumber(ARGV[5]), m) end
return ms
`)

// ARGV[4:]: member, the updated_at read, new state, the lease in ms, now
// in ms. A record regraded since the read is left pending; if the lease in
// force began before the regrade, it was for the grade before, and it ends
// now: the regrade is given out at once. A lease taken since (on the
// regrade) is kept.
var luaMarkFeedback = script(`
local k = p .. 'fb:' .. ARGV[4]
local upd = redis.call('HGET', k, 'updated_at')
if upd ~= ARGV[5] then
  local z = p .. 'fbpending'
  local at = redis.call('ZSCORE', z, ARGV[4])
  local nowms = tonumber(ARGV[8])
  if upd and at and tonumber(at) > nowms and
      tonumber(at) - tonumber(ARGV[7]) < (tonumber(string.sub(upd, 1, -7)) or 0) then
    redis.call('ZADD', z, 'XX', nowms, ARGV[4])
  end
  return 0
end
redis.call('HSET', k, 'state', ARGV[6])
redis.call('HINCRBY', k, 'attempts', 1)
if ARGV[6] ~= 'pending' then redis.call('ZREM', p .. 'fbpending', ARGV[4]) end
return 1
`)

// luaPrune is the trace retention shared by PutTraces and PruneTraces:
// ARGV[4] the age cutoff in ms (empty for none), ARGV[5] the count limit
// (0 for none), ARGV[6] how many to keep when it is exceeded.
const luaPrune = `
local function prune()
  local n = 0
  local z = p .. 'traces'
  if ARGV[4] ~= '' then
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. ARGV[4])
    for _, id in ipairs(old) do
      n = n + redis.call('DEL', p .. 'trace:' .. id)
      redis.call('DEL', p .. 'tracefb:' .. id)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. ARGV[4])
  end
  local max = tonumber(ARGV[5])
  if max > 0 then
    local c = redis.call('ZCARD', z)
    if c > max then
      local last = c - tonumber(ARGV[6]) - 1
      for _, id in ipairs(redis.call('ZRANGE', z, 0, last)) do
        n = n + redis.call('DEL', p .. 'trace:' .. id)
        redis.call('DEL', p .. 'tracefb:' .. id)
      end
      redis.call('ZREMRANGEBYRANK', z, 0, last)
    end
  end
  return n
end
`

// ARGV[7:]: per trace id, JSON, created ms, TTL ms (0: none). Returns
// the traces retention dropped.
var luaPutTraces = script(luaPrune + `
for i = 7, #ARGV, 4 do
  local k = p .. 'trace:' .. ARGV[i]
  if ARGV[i+3] == '0' then
    redis.call('SET', k, ARGV[i+1])
  else
    redis.call('SET', k, ARGV[i+1], 'PX', ARGV[i+3])
  end
  redis.call('ZADD', p .. 'traces', ARGV[i+2], ARGV[i])
end
return prune()
`)

var luaPruneTraces = script(luaPrune + `return prune()`)
