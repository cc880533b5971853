"""Lua scripts of the Redis state store: each runs atomically on the server (EVALSHA).

Key layout under the store's prefix P (``key`` is a budget/limiter/breaker key, ``rid`` a
reservation id):

  P spend:<key>    hash  v = spent micro-dollars, e = window end (epoch s); PEXPIRE at the end
  P holds:<key>    zset  rid -> hold expiry (epoch s)
  P held:<key>     hash  rid -> held micro-dollars
  P res:<rid>      hash  x = hold expiry, k = JSON [[key, cap, window end | null], ...]
  P first:<key>    string  expiry (epoch s) or "inf"
  P rate:<key>     zset  "<token>:<amount>" -> entry expiry (epoch s)   (sliding log)
  P breaker:<key>  hash  f = failures, o = opened_at or "", x = expiry

Time: every script takes ``now`` from the client (ARGV), never the server's TIME, so an
injected clock drives expiry in all three stores alike. Every expiry decision compares against
the stored epoch values; the PEXPIREs only reclaim memory, set long enough (relative
durations, so client/server clock offsets do not matter) never to cut a live entry short.

The settle/release script derives the budget keys from the reservation record instead of
receiving them in KEYS: fine on a standalone Redis (or Sentinel), not on Redis Cluster.
https://redis.io/docs/latest/develop/interact/programmability/eval-intro/
"""

from __future__ import annotations

# Shared Lua helpers, prepended to the scripts that use them.
_HELPERS = """
local function spent_of(spend, now)
  local v = redis.call('HMGET', spend, 'v', 'e')
  if not v[1] or (v[2] and tonumber(v[2]) <= now) then return 0 end
  return tonumber(v[1])
end

local function add_spend(spend, amount, now, wend)
  local e = redis.call('HGET', spend, 'e')
  if e and tonumber(e) <= now then redis.call('DEL', spend) end
  local v = redis.call('HINCRBY', spend, 'v', amount)
  if wend and wend ~= cjson.null and wend ~= '' then
    redis.call('HSET', spend, 'e', wend)
    redis.call('PEXPIRE', spend, math.max(math.ceil((tonumber(wend) - now) * 1000), 1))
  end
  return v
end

local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end

local function chunks(list, fn)
  for i = 1, #list, 1000 do fn(unpack(list, i, math.min(i + 999, #list))) end
end
"""

# KEYS: res, then per budget key: spend, holds, held.
# ARGV: rid, amount, now, hold_until, keep_ms, spec (JSON [[key, cap, window end|null], ...]).
# Returns 0 when held (or already held under this rid), {index, spent, reserved} when refused.
RESERVE = _HELPERS + """
local rid, amount, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep_ms = tonumber(ARGV[5])
local x = redis.call('HGET', KEYS[1], 'x')
if x and tonumber(x) > now then return 0 end
local spec = cjson.decode(ARGV[6])
for i = 1, #spec do
  local holds, held = KEYS[3 * i], KEYS[3 * i + 1]
  local gone = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
    chunks(gone, function(...) redis.call('HDEL', held, ...) end)
  end
end
for i = 1, #spec do
  local spent = spent_of(KEYS[3 * i - 1], now)
  local reserved = 0
  for _, a in ipairs(redis.call('HVALS', KEYS[3 * i + 1])) do reserved = reserved + tonumber(a) end
  if spent + reserved + amount > spec[i][2] then return {i, spent, reserved} end
end
for i = 1, #spec do
  redis.call('ZADD', KEYS[3 * i], ARGV[4], rid)
  redis.call('HSET', KEYS[3 * i + 1], rid, ARGV[2])
  keep(KEYS[3 * i], keep_ms)
  keep(KEYS[3 * i + 1], keep_ms)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'x', ARGV[4], 'k', ARGV[6])
redis.call('PEXPIRE', KEYS[1], keep_ms)
return 0
"""

# KEYS: res.  ARGV: prefix, rid, now, actual ("0" to release).
# Returns 1 when a live hold was settled/released, 0 for an unknown, finished or expired id.
FINISH = _HELPERS + """
local rec = redis.call('HMGET', KEYS[1], 'x', 'k')
if not rec[1] then return 0 end
redis.call('DEL', KEYS[1])
local p, rid, now, actual = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local live = tonumber(rec[1]) > now
for _, k in ipairs(cjson.decode(rec[2])) do
  redis.call('ZREM', p .. 'holds:' .. k[1], rid)
  redis.call('HDEL', p .. 'held:' .. k[1], rid)
  if live and actual ~= '0' then add_spend(p .. 'spend:' .. k[1], actual, now, k[3]) end
end
if live then return 1 end
return 0
"""

# KEYS: spend, holds, held.  ARGV: now.  Returns {spent, live reserved}; writes nothing.
USAGE = _HELPERS + """
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
local reserved = 0
chunks(ids, function(...)
  for _, a in ipairs(redis.call('HMGET', KEYS[3], ...)) do
    if a then reserved = reserved + tonumber(a) end
  end
end)
return {spent_of(KEYS[1], now), reserved}
"""

# KEYS: spend.  ARGV: amount, now, window end or "".  Returns the new spend.
ADD_SPEND = _HELPERS + """
return add_spend(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3])
"""

# KEYS: first.  ARGV: now, expiry or "inf", keep_ms or "".  Returns 1 the first time, else 0.
FIRST_TIME = """
local x = redis.call('GET', KEYS[1])
if x and (x == 'inf' or tonumber(x) > tonumber(ARGV[1])) then return 0 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

# Sliding log: one zset entry per acquire, scored by when it leaves the window.
# KEYS: rate.  ARGV: now, limit, amount, entry expiry, member token, keep_ms.
# Returns "0" when taken, else the seconds until the amount would fit (as a string: Lua
# numbers returned to Redis are truncated to integers).
RATE_ACQUIRE = """
local now, limit, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
if used + amount <= limit then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[5] .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return '0'
end
local excess = used + amount - limit
for i = 1, #entries, 2 do
  excess = excess - tonumber(string.match(entries[i], ':(%d+)$'))
  if excess <= 0 then return tostring(math.max(tonumber(entries[i + 1]) - now, 0)) end
end
return 'inf'
"""

# KEYS: breaker.  ARGV: failures, opened_at or "", expiry, keep_ms.
BREAKER_PUT = """
redis.call('HSET', KEYS[1], 'f', ARGV[1], 'o', ARGV[2], 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""
