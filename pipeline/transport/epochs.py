"""Noticing that Redis came back with less than it had: a restart from an older snapshot.

Redis restarted from an RDB snapshot or an AOF that missed the last writes forgets the
tail of every stream, and new appends then *reuse* the lost offsets. A consumer that
read up to offset 100 before the restart would go on from 100 and skip the new records
stored under 80-99, without a word.

Every start of a Redis server has a new ``run_id`` (``INFO server``). The append script
pushes ``<run_id>:<first offset>`` on a partition's epoch list (:func:`keys.epochs_key`)
at the first append of each run. After a connection error a consumer compares the
server's run with the one its positions come from; if it changed, a position beyond
the highwater lost the tail, and a position beyond the first offset appended in a newer
run read offsets that now hold other records. Either way it goes back, and says so.

On a Redis Cluster every partition has a server of its own (the primary of its slot),
and a failover promotes a replica that may lack the last writes: the same loss, on
the partitions of one node. So runs are asked per partition (:func:`partition_runs`),
of the node that holds the partition's slot at that moment: a script keyed by the
partition's stream runs there, whatever the client's slot map said before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from pipeline.transport.clients import is_cluster
from pipeline.transport.keys import epochs_key, stream_key

#: The run id of the server the script runs on (routed there by the key it is given).
_RUN_LUA = "return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')"


async def server_run(redis: aioredis.Redis) -> str:
    """The ``run_id`` of the server (new at every start of Redis)."""
    info: Any = await redis.info("server")
    return str(info["run_id"])


async def partition_runs(
    redis: aioredis.Redis, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """The ``run_id`` of the server holding each ``(topic, partition)``.

    One server: one ``INFO`` for all. A cluster: one script per partition, keyed by its
    stream (one round trip per node: the cluster pipeline sends each node's together).
    """
    wanted = list(partitions)
    if not is_cluster(redis):
        run = await server_run(redis)
        return {tp: run for tp in wanted}
    async with redis.pipeline(transaction=False) as pipe:
        for topic, partition in wanted:
            pipe.eval(_RUN_LUA, 1, stream_key(topic, partition))
        replies: list[Any] = await pipe.execute()
    return {
        tp: reply.decode() if isinstance(reply, bytes) else str(reply)
        for tp, reply in zip(wanted, replies, strict=True)
    }


async def read_epochs(redis: aioredis.Redis, topic: str, partition: int) -> list[tuple[str, int]]:
    """(run id, first offset appended in that run) of a partition, newest first."""
    raw: Any = await redis.lrange(epochs_key(topic, partition), 0, -1)
    out = []
    for item in raw:
        text = item.decode() if isinstance(item, bytes) else str(item)
        run, _, first = text.partition(":")
        out.append((run, int(first)))
    return out


def first_reused(epochs: list[tuple[str, int]], known_run: str, current_run: str) -> int | None:
    """The lowest offset appended by a server run newer than ``known_run``, if any.

    Runs are newest first. When ``known_run`` is not on the list (nothing was appended
    to the partition in it, or Redis lost that too), only the current run is surely
    newer.
    """
    newer: list[int] = []
    for run, first in epochs:
        if run == known_run:
            break
        newer.append(first)
    else:
        newer = [first for run, first in epochs if run == current_run]
    return min(newer, default=None)


def resume_offset(position: int, highwater: int, reused_from: int | None) -> int:
    """Where a consumer at ``position`` must read from after the server changed."""
    target = min(position, highwater)
    if reused_from is not None:
        target = min(target, reused_from)
    return target
