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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from pipeline.transport.errors import TRANSIENT_ERRORS
from pipeline.transport.keys import COMPACTED_KEY, index_key, stream_key

log = logging.getLogger(__name__)

#: Entries one script call examines. The script blocks Redis while it runs, and an
#: entry costs it 20-140 us when values are session states of 7-13 KB (XRANGE copies
#: them into Lua): 2,000 entries a call held every client up for 11 ms, 25 for 0.4 ms
#: on average and 3.4 ms at worst (Redis SLOWLOG, 1,000 live sessions).
CHUNK = 10
#: Seconds between compaction passes in a worker.
INTERVAL_S = 5.0
CURSOR_FIELD = "__cursor__"

# KEYS[1] stream, KEYS[2] index; ARGV[1] count. Returns {deleted, examined}.
_COMPACT_LUA = """
local cursor = redis.call('HGET', KEYS[2], '__cursor__') or '0-0'
local entries = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', ARGV[1])
local deleted = 0
for _, entry in ipairs(entries) do
  local id = entry[1]
  local fields = entry[2]
  local key = nil
  for i = 1, #fields, 2 do
    if fields[i] == 'k' then key = fields[i + 1] break end
  end
  if key then
    local previous = redis.call('HGET', KEYS[2], 'k:' .. key)
    if previous then
      deleted = deleted + redis.call('XDEL', KEYS[1], previous)
    end
    redis.call('HSET', KEYS[2], 'k:' .. key, id)
  end
  cursor = id
end
redis.call('HSET', KEYS[2], '__cursor__', cursor)
return {deleted, #entries}
"""


class Compactor:
    """Compacts changelog partitions; one per Redis client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_COMPACT_LUA)
        self.deleted = 0
        self.examined = 0

    async def compact(self, topic: str, partition: int, *, max_entries: int | None = None) -> int:
        """Compact what was appended since the last pass; returns entries deleted."""
        keys = [stream_key(topic, partition), index_key(topic, partition)]
        deleted = 0
        seen = 0
        while max_entries is None or seen < max_entries:
            result = await self._script(keys=keys, args=[CHUNK])
            gone, examined = int(result[0]), int(result[1])
            deleted += gone
            seen += examined
            if examined < CHUNK:
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
