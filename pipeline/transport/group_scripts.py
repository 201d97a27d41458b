"""The Lua scripts of group coordination (see :mod:`pipeline.transport.coordination`).

Each runs atomically on the server, on keys of one group (one Cluster slot), and starts
by checking what fences its caller: the group's epoch and the caller's incarnation
token, and for commits its lease (server time) and the published generation.
"""

from __future__ import annotations

# Server time in ms, as the first lines of a script.
NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: state, members, incarnations, joined, rebalance
# ARGV: member, random part of the token, epoch to create if none, ttl ms, state lost (0|1),
#       settle ms of a new epoch
# A new incarnation of a member: a fresh token (a counter makes tokens ordered, so an
# older snapshot of Redis is told apart from a newer incarnation), its lease, and a
# generation it may join: the one being joined, else a new one it asks for
# (see GroupCoordinator._follow).
REGISTER_LUA = (
    NOW
    + """
local ttl = tonumber(ARGV[4])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
-- Members of a lost state may still fetch until they notice (at their next heartbeat)
-- or their leases lapse (locally): a generation published before that could hand their
-- partitions out twice. A member that knows it held the lost state holds back the
-- group for a whole lease; a new epoch (a new group, or a lost one whose members have
-- not noticed yet: nobody can tell) for two heartbeat intervals, time enough for a live
-- member of a lost state to notice and hold the group back itself.
local settle_ms = 0
if ARGV[5] == '1' then settle_ms = ttl end
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  settle_ms = math.max(settle_ms, tonumber(ARGV[6]))
end
local settle = tonumber(redis.call('HGET', KEYS[1], 'settle_until') or '0')
if settle < now + settle_ms then redis.call('HSET', KEYS[1], 'settle_until', now + settle_ms) end
local seq = redis.call('HINCRBY', KEYS[1], 'incarnations', 1)
local token = seq .. ':' .. ARGV[2]
redis.call('HSET', KEYS[3], ARGV[1], token)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local gen = redis.call('HGET', KEYS[1], 'generation') or '0'
local phase = redis.call('HGET', KEYS[1], 'phase') or ''
if phase ~= 'joining' then redis.call('SET', KEYS[5], ARGV[1]) end
return {epoch, token, gen, phase}
"""
)

# KEYS: members, leader, state, assignment, incarnations, joined
# ARGV: member, ttl ms, token, epoch
HEARTBEAT_LUA = (
    NOW
    + """
local ttl = tonumber(ARGV[2])
local epoch = redis.call('HGET', KEYS[3], 'epoch')
if epoch ~= ARGV[4] then return {'epoch', epoch or ''} end
local token = redis.call('HGET', KEYS[5], ARGV[1])
if not token then return {'evicted', ''} end
if token ~= ARGV[3] then return {'fenced', token} end
local lease = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if lease < now then
  -- Lapsed on the server: its partitions may be handed out already. Never revive it.
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('HDEL', KEYS[6], ARGV[1])
  return {'evicted', ''}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
local leader = redis.call('GET', KEYS[2])
if not leader then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
  leader = ARGV[1]
elseif leader == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local gen = redis.call('HGET', KEYS[3], 'generation') or '0'
local phase = redis.call('HGET', KEYS[3], 'phase') or ''
local agen = redis.call('HGET', KEYS[4], '__generation__') or '0'
local settle = redis.call('HGET', KEYS[3], 'settle_until') or '0'
return {'ok', leader, gen, phase, agen, tostring(now), settle}
"""
)

# The checks every write of a member starts with: its group epoch and its incarnation.
# KEYS[1] state, KEYS[2] incarnations; ARGV[1] member, ARGV[2] token, ARGV[3] epoch.
FENCE = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[3] then return -3 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return -4 end
"""

# KEYS: state, incarnations, joined, meta; ARGV: member, token, epoch, generation, metadata
JOIN_LUA = (
    FENCE
    + """
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[4] then return -2 end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 1
"""
)

# KEYS: state, incarnations, leader, rebalance; ARGV: member, token, epoch, expected generation
START_GENERATION_LUA = (
    FENCE
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local gen = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if gen ~= tonumber(ARGV[4]) then return -2 end
redis.call('HSET', KEYS[1], 'generation', gen + 1, 'phase', 'joining')
redis.call('DEL', KEYS[4])
return gen + 1
"""
)

# KEYS: state, incarnations, leader, assignment
# ARGV: member, token, epoch, generation, then member/assignment pairs
PUBLISH_LUA = (
    FENCE
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[4] then return -2 end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], '__generation__', ARGV[4])
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'phase', 'stable')
return 1
"""
)

# KEYS: state, incarnations, members, assignment, offsets
# ARGV: member, token, epoch, generation, then field/offset pairs
COMMIT_LUA = (
    NOW
    + FENCE
    + """
local lease = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not lease or tonumber(lease) < now then return 0 end
if redis.call('HGET', KEYS[4], '__generation__') ~= ARGV[4] then return -1 end
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
end
return 1
"""
)

# KEYS: state, incarnations, members, joined; ARGV: member, token, epoch, then members
# Evicts members (lease lapsed, or did not join in time) unless they renewed meanwhile.
EVICT_LUA = (
    NOW
    + FENCE
    + """
local out = {}
for i = 4, #ARGV do
  if ARGV[i] ~= ARGV[1] then
    redis.call('ZREM', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out
"""
)

# KEYS: state, incarnations, members, joined, rebalance, leader; ARGV: member, token, epoch
LEAVE_LUA = (
    FENCE
    + """
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('SET', KEYS[5], ARGV[1])
if redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
return 1
"""
)
