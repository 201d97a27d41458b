"""Changelog compaction: keep about one entry per key in a table's changelog.

Redis has no log compaction, so without this a table's changelog grows with every
update, and so do memory and recovery time. Topics declared with ``compacting=True``
(Faust's changelogs) are listed in ``livecoach:compacted``; the worker that owns a
changelog partition compacts it in the background.

Per partition, a small index (a HASH beside the stream, under the same hash tag) maps
each key to the offset of its latest entry. One Lua call reads the next entries after
a cursor, deletes (``XDEL``) the entry each of them supersedes and moves the cursor,
atomically, so it is safe to run from several workers at once and to interrupt at any
point. Offsets do not change: compaction only leaves gaps, which Faust's recovery
tolerates (it reads to the highwater, whatever lies between).

A tombstone (a deleted table key: an entry with no value) is kept for
:data:`DELETE_RETENTION_S` after compaction first saw it, then it and the key's index
entry are removed, so deleted keys cost nothing for good. The index records the
topic's incarnation (:func:`pipeline.transport.topics.incarnation`) and is rebuilt
from the stream's start when the topic was re-created, the stream is gone, or the
stream ends before the index's cursor: an index of an earlier life would delete
entries of other keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from pipeline.transport import streams
from pipeline.transport.errors import TRANSIENT_ERRORS
from pipeline.transport.keys import COMPACTED_KEY, index_key, stream_key, tombstones_key
from pipeline.transport.tunables import Tunables

log = logging.getLogger(__name__)

#: Entries one script call examines. The script blocks Redis while it runs, and an
#: entry costs it 20-140 us when values are session states of 7-13 KB (XRANGE copies
#: them into Lua): 2,000 entries a call held every client up for 11 ms, 25 for 0.4 ms
#: on average and 3.4 ms at worst (Redis SLOWLOG, 1,000 live sessions).
CHUNK = 10
#: Seconds between compaction passes in a worker.
INTERVAL_S = 5.0
CURSOR_FIELD = "__cursor__"

#: Seconds a tombstone (a deleted table key) stays in a changelog after compaction
#: first saw it (Kafka's ``delete.retention.ms``, 24 h): a consumer that reads the
#: changelog within that time sees the delete. Then the tombstone and the key's index
#: entry go.
DELETE_RETENTION_S = Tunables.delete_retention_s
INCARNATION_FIELD = "__incarnation__"

# KEYS[1] stream, KEYS[2] index, KEYS[3] tombstones (zset: key -> first seen, ms);
# ARGV[1] count, ARGV[2] now_ms, ARGV[3] delete retention ms, ARGV[4] the topic's
# incarnation. Index values: the entry id of a key's latest entry, "d" + id when that
# entry is a tombstone. Returns {deleted, examined, reset (0, 1 re-created, 2 gone,
# 3 stream behind the cursor), tombstones dropped}.
_COMPACT_LUA = """
local stream, index, tombs = KEYS[1], KEYS[2], KEYS[3]
local function seq(id) return tonumber(string.sub(id, string.find(id, '-', 1, true) + 1)) end
if redis.call('EXISTS', stream) == 0 then
  local had = redis.call('DEL', index, tombs)
  return {0, 0, had > 0 and 2 or 0, 0}
end
local reset = 0
local stored = redis.call('HGET', index, '__incarnation__')
local cursor = redis.call('HGET', index, '__cursor__')
if stored and stored ~= ARGV[4] then
  reset = 1
elseif cursor then
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      if seq(info[i + 1]) < seq(cursor) then reset = 3 end
      break
    end
  end
end
if reset > 0 then
  redis.call('DEL', index, tombs)
  cursor = nil
end
if not stored or reset > 0 then redis.call('HSET', index, '__incarnation__', ARGV[4]) end
cursor = cursor or '0-0'
local entries = redis.call('XRANGE', stream, '(' .. cursor, '+', 'COUNT', ARGV[1])
local now = tonumber(ARGV[2])
local deleted = 0
for _, entry in ipairs(entries) do
  local id = entry[1]
  local fields = entry[2]
  local key = nil
  local tombstone = true
  for i = 1, #fields, 2 do
    local name = fields[i]
    -- An empty value is a delete written before tombstones existed (changelogs only).
    if name == 'k' then
      key = fields[i + 1]
    elseif name == 'v' then
      tombstone = fields[i + 1] == ''
    end
  end
  if key then
    local field = 'k:' .. key
    local previous = redis.call('HGET', index, field)
    if previous then
      if string.sub(previous, 1, 1) == 'd' then
        previous = string.sub(previous, 2)
        if not tombstone then redis.call('ZREM', tombs, key) end
      end
      deleted = deleted + redis.call('XDEL', stream, previous)
    end
    if tombstone then
      redis.call('HSET', index, field, 'd' .. id)
      redis.call('ZADD', tombs, now, key)
    else
      redis.call('HSET', index, field, id)
    end
  end
  cursor = id
end
redis.call('HSET', index, '__cursor__', cursor)
local dropped = 0
local expired = redis.call('ZRANGEBYSCORE', tombs, '-inf', now - tonumber(ARGV[3]),
  'LIMIT', 0, ARGV[1])
for _, key in ipairs(expired) do
  local field = 'k:' .. key
  local latest = redis.call('HGET', index, field)
  if latest and string.sub(latest, 1, 1) == 'd' then
    dropped = dropped + redis.call('XDEL', stream, string.sub(latest, 2))
    redis.call('HDEL', index, field)
  end
  redis.call('ZREM', tombs, key)
end
return {deleted, #entries, reset, dropped}
"""

#: Why a compaction index was thrown away (the script's third result).
_RESETS = {
    1: "the topic was re-created (its incarnation changed)",
    2: "the stream is gone",
    3: "the stream is behind the index's cursor (re-created or restored from a snapshot)",
}


class Compactor:
    """Compacts changelog partitions; one per Redis client."""

    def __init__(
        self, redis: aioredis.Redis, *, delete_retention_s: float = DELETE_RETENTION_S
    ) -> None:
        self.redis = redis
        self.delete_retention_s = delete_retention_s
        self._script = redis.register_script(_COMPACT_LUA)
        self.deleted = 0
        self.examined = 0
        self.tombstones_dropped = 0

    async def compact(
        self,
        topic: str,
        partition: int,
        *,
        max_entries: int | None = None,
        now_ms: int | None = None,
        delete_retention_s: float | None = None,
    ) -> int:
        """Compact what was appended since the last pass; returns entries deleted
        (superseded entries and expired tombstones)."""
        keys = [
            stream_key(topic, partition),
            index_key(topic, partition),
            tombstones_key(topic, partition),
        ]
        life = await streams.incarnation(self.redis, topic)
        retention_ms = int(
            (self.delete_retention_s if delete_retention_s is None else delete_retention_s) * 1000
        )
        deleted = 0
        seen = 0
        while max_entries is None or seen < max_entries:
            now = now_ms if now_ms is not None else int(time.time() * 1000)
            result = await self._script(keys=keys, args=[CHUNK, now, retention_ms, life])
            gone, examined, reset, dropped = (int(r) for r in result)
            if reset:
                log.warning(
                    "compaction index of %s[%d] reset: %s; compacting from its start",
                    topic, partition, _RESETS.get(reset, reset),
                )  # fmt: skip
            deleted += gone + dropped
            self.tombstones_dropped += dropped
            seen += examined
            if examined < CHUNK and dropped < CHUNK:
                break
            await asyncio.sleep(0)  # let the worker's own work run between chunks
        self.deleted += deleted
        self.examined += seen
        return deleted

    async def run(
        self, partitions: Callable[[], Iterable[tuple[str, int]]], interval_s: float = INTERVAL_S
    ) -> None:
        """Compact ``partitions()`` every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            for topic, partition in list(partitions()):
                try:
                    await self.compact(topic, partition)
                except TRANSIENT_ERRORS as exc:
                    log.warning("compaction of %s[%d] failed (%r)", topic, partition, exc)
                    break


async def compacted_topics(redis: aioredis.Redis) -> set[str]:
    """Topics declared compacted (Faust's changelogs)."""
    with contextlib.suppress(*TRANSIENT_ERRORS):
        return {
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await redis.smembers(COMPACTED_KEY)
        }
    return set()
