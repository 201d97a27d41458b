"""The append script: batches of records to one or more partitions in one call.

A Lua function on Redis 7 (``FCALL``) and the same code as a script on 6.2
(``EVALSHA``); :mod:`pipeline.transport.streams` builds the calls and reads their
results. One call takes the batches of every partition a write touches when they live
on one server: a call costs Redis about as much as three ``XADD``s before it does any
work (measured on Redis 7.0: an empty function 7.9 us, ``XADD`` 4.7 us), and the
producer writes to several partitions at a time. On a Redis Cluster a call holds one
partition (its keys share the partition's hash slot).

For each batch it checks, atomically:

* the fence (changelogs): a writer whose generation is no longer the partition's
  owner is refused (FENCED), so a worker that lost its lease cannot write stale state;
* the writer's lease (any topic): a worker's writes carry the end of its group lease in
  server time, and are refused (FENCED) once Redis's clock is past it. The worker
  checks its lease before it writes, but a process frozen between that check and the
  send (SIGSTOP, a VM pause, a long GC) would otherwise deliver outputs after another
  worker took its partitions over;
* the producer's batch sequence (:mod:`pipeline.transport.idempotence`): a batch seen
  before is not appended again, its first offset is returned (a lost reply's retry),
  and its state's TTL is written again: a ``WAIT`` counts the writes of its own
  connection, and the retry's connection may not be the first attempt's;
* the server run (INFO's run_id, new at every start of Redis): the first offset
  appended in each run is pushed on the partition's epoch list, so that consumers
  can tell that a restart from an older snapshot reused offsets they had read.

A refused batch does not stop the others: each batch has its own result. An error
Redis raises inside the call (a key of the wrong type, say) ends the whole call, after
the batches before it were appended; the caller then sends the batches one call each,
with the same sequences, so those already in are recognised and not appended twice.

Redis 7 fills in the stream sequence itself ("0-*"); 6.2 computes it from
``last-generated-id``.

KEYS, per batch: stream, producer state (hash), epochs (list), fence (string).
ARGV: 1 if the server has "0-*", state TTL ms, sequence window, epochs kept, lease end
(server ms; 0: none), then per batch: MAXLEN (0: none), batch sequence (0: none),
fence token ('': unfenced), 1 if the lease applies, entry count, then per entry: field
count, fields...
Returns one result per batch: ``{first offset, 1 if the batch was a repeat else 0}``,
or a string saying why it was refused (``FENCED ...``, ``OUTOFORDER ...``).
"""

from __future__ import annotations

import hashlib

#: The body calls ``server_run()``, which the two wrappers below define.
_BODY = """
local autogen = ARGV[1] == '1'
local ttl, window, kept = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_end = tonumber(ARGV[5])
local now = nil

local function lease_over()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now >= lease_end
end

local function append_batch(stream, state, epochs, fence, maxlen, bseq_arg, token, leased,
                            from, count)
  if leased and lease_end > 0 and lease_over() then
    return 'FENCED writer lease ended at ' .. lease_end .. ' ms, server time ' .. now ..
      ' ms (' .. stream .. ')'
  end
  if token ~= '' then
    local owner = redis.call('GET', fence)
    if owner and owner ~= token then
      return 'FENCED ' .. stream .. ' belongs to generation ' .. owner .. ', not ' .. token
    end
  end
  local bseq = tonumber(bseq_arg)
  local last = 0
  if bseq > 0 then
    local got = redis.call('HMGET', state, bseq_arg, 'last')
    if got[1] then
      -- A write, so that a WAIT after this call also covers the first attempt's append.
      redis.call('PEXPIRE', state, ttl)
      return {tonumber(got[1]), 1}
    end
    last = tonumber(got[2] or '0')
    if bseq <= last - window then
      return 'OUTOFORDER batch ' .. bseq_arg .. ' for ' .. stream .. ' is older than the last '
        .. window
    end
  end
  local seq = 0
  if not autogen and redis.call('EXISTS', stream) == 1 then
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        local last_id = info[i + 1]
        local dash = string.find(last_id, '-')
        if tonumber(string.sub(last_id, 1, dash - 1)) ~= 0 then
          return 'stream ' .. stream .. ' has time-based ids'
        end
        seq = tonumber(string.sub(last_id, dash + 1))
        break
      end
    end
  end
  local first = -1
  local i = from
  for _ = 1, count do
    local n = tonumber(ARGV[i])
    local id = '0-*'
    if not autogen then
      seq = seq + 1
      id = '0-' .. seq
    end
    local added
    if maxlen > 0 then
      added = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id, unpack(ARGV, i + 1, i + n))
    else
      added = redis.call('XADD', stream, id, unpack(ARGV, i + 1, i + n))
    end
    if first < 0 then first = tonumber(string.sub(added, 3)) - 1 end
    i = i + n + 1
  end
  local run = server_run()
  local top = redis.call('LINDEX', epochs, 0)
  if not top or string.sub(top, 1, #run) ~= run then
    redis.call('LPUSH', epochs, run .. ':' .. first)
    redis.call('LTRIM', epochs, 0, kept - 1)
  end
  if bseq > 0 then
    redis.call('HSET', state, bseq_arg, first, 'last', math.max(last, bseq))
    redis.call('HDEL', state, bseq - window)
    redis.call('PEXPIRE', state, ttl)
  end
  return {first, 0}
end

local results = {}
local a = 6
for b = 1, #KEYS / 4 do
  local count = tonumber(ARGV[a + 4])
  local from = a + 5
  local after = from
  for _ = 1, count do after = after + tonumber(ARGV[after]) + 1 end
  local k = 4 * b - 3
  results[b] = append_batch(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3],
    tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3] == '1', from, count)
  a = after
end
return results
"""

_RUN_ID = "string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')"

#: ``server_run()``: the run id, read once where ``run`` lives.
_SERVER_RUN = f"""local run = nil
local function server_run()
  if not run then run = {_RUN_ID} end
  return run
end"""

#: Redis 6.2: a script, called by sha; it reads the run id (INFO, ~12 us) once a call.
SCRIPT = f"""
{_SERVER_RUN}
{_BODY}"""

#: Redis 7: the same body as a function, which keeps the run id in its library (an
#: upvalue) once read. A library lives in one server process and is loaded afresh by
#: every start (from the data, or by us after "Function not found"), so the value kept
#: is always the current run's. Named by a hash of its text: two livecoach versions
#: sharing a Redis each call their own.
_LIBRARY_TEMPLATE = f"""#!lua name=NAME
{_SERVER_RUN}
redis.register_function('NAME', function(KEYS, ARGV)
{_BODY}
end)
"""
FUNCTION_NAME = "livecoach_append_" + hashlib.sha1(_LIBRARY_TEMPLATE.encode()).hexdigest()[:12]
LIBRARY = _LIBRARY_TEMPLATE.replace("NAME", FUNCTION_NAME)
