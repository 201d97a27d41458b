"""Topic metadata kept in Redis: partition counts, incarnations, groups, deletion.

* A topic's partition count is stored once (``HSETNX``: the first declaration or the
  first app that needs it wins) and every process uses the stored count, so two apps
  configured with different ``topic_partitions`` still agree on where a key lives.
* Each topic gets a random *incarnation* id when it is first declared. Per-partition
  state kept beside the streams (the compaction index) records the incarnation it was
  built for and is thrown away when the topic was re-created meanwhile.
* Consumer groups register themselves (a sorted set: group -> last seen, in ms) so
  that retention can find every group's committed offsets and never trim past them.
* :func:`delete_topic` removes a topic and everything the transport keeps about it.

Faust-free; :mod:`pipeline.transport.streams` re-exports what callers use.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from pipeline.transport.keys import (
    COMPACTED_KEY,
    GROUPS_KEY,
    INCARNATIONS_KEY,
    RETENTION_KEY,
    TOPICS_KEY,
    epochs_key,
    fence_key,
    group_key,
    index_key,
    producer_key,
    stream_key,
    tombstones_key,
    tp_field,
)
from pipeline.transport.tunables import Tunables

#: A group not seen for this long no longer holds retention back (Kafka's
#: ``offsets.retention.minutes`` is 7 days).
GROUP_EXPIRY_S = Tunables.group_expiry_s


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_incarnation() -> str:
    """A random id for one life of a topic."""
    return secrets.token_hex(8)


async def ensure_partition_count(redis: aioredis.Redis, topic: str, default: int) -> int:
    """The stored partition count of ``topic``; stores ``default`` if there is none.

    For topics nobody declares (Faust relies on Kafka's auto-create for those): the
    first process that needs the count records its own, and everyone else follows it,
    instead of each app silently using its own ``topic_partitions``.
    """
    if await redis.hsetnx(TOPICS_KEY, topic, int(default)):
        await redis.hset(INCARNATIONS_KEY, topic, new_incarnation())
    stored = await redis.hget(TOPICS_KEY, topic)
    return int(stored) if stored is not None else int(default)


async def incarnation(redis: aioredis.Redis, topic: str) -> str:
    """The incarnation id of ``topic`` (created for topics declared before there were any)."""
    current = await redis.hget(INCARNATIONS_KEY, topic)
    if current is None:
        await redis.hsetnx(INCARNATIONS_KEY, topic, new_incarnation())
        current = await redis.hget(INCARNATIONS_KEY, topic)
    return _text(current)


# --- consumer groups ------------------------------------------------------------------


async def register_group(redis: aioredis.Redis, group: str, *, now_ms: int | None = None) -> None:
    """Record that ``group`` is alive, so retention honours its commits."""
    seen_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    await redis.zadd(GROUPS_KEY, {group: seen_ms})


async def live_groups(
    redis: aioredis.Redis, *, now_ms: int | None = None, expiry_s: float = GROUP_EXPIRY_S
) -> tuple[list[str], list[str]]:
    """(groups seen within ``expiry_s``, groups not seen for longer)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    cutoff = now - int(expiry_s * 1000)
    raw: Any = await redis.zrange(GROUPS_KEY, 0, -1, withscores=True)
    live: list[str] = []
    expired: list[str] = []
    for member, score in raw:
        (live if score >= cutoff else expired).append(_text(member))
    return live, expired


async def group_commits(redis: aioredis.Redis, groups: list[str]) -> dict[str, Mapping[str, int]]:
    """Committed offsets per group: group -> {``topic:partition``: next offset}."""
    out: dict[str, Mapping[str, int]] = {}
    if not groups:
        return out
    async with redis.pipeline(transaction=False) as pipe:
        for group in groups:
            pipe.hgetall(group_key(group, "offsets"))
        replies: list[Any] = await pipe.execute()
    for group, reply in zip(groups, replies, strict=True):
        out[group] = {_text(k): int(v) for k, v in reply.items()}
    return out


# --- deletion -------------------------------------------------------------------------


async def delete_topic(redis: aioredis.Redis, topic: str) -> int:
    """Delete ``topic``: its streams, partition count, retention, incarnation,
    compaction state, server-run epochs, changelog fence and every registered group's
    committed offsets for it, and producers' sequences on it.

    Returns the number of partitions removed. Stop the apps that use the topic
    first: a running worker keeps its positions and cached partition count.
    """
    stored = await redis.hget(TOPICS_KEY, topic)
    partitions = int(stored) if stored is not None else 0
    # Streams beyond the stored count (or of a topic whose count was lost) too.
    pattern = stream_key(_glob_escape(topic), 0).replace(":0}", ":*}")
    async for raw in redis.scan_iter(match=pattern, count=1000):
        tail = _text(raw).rsplit(":", 1)[-1].rstrip("}")
        if tail.isdigit():
            partitions = max(partitions, int(tail) + 1)
    groups = [_text(g) for g in await redis.zrange(GROUPS_KEY, 0, -1)]
    producers = []
    for p in range(partitions):
        pattern = producer_key(_glob_escape(topic), p, "*")
        producers += [raw async for raw in redis.scan_iter(match=pattern, count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in producers:
            pipe.delete(key)
        for p in range(partitions):
            # One key a command: a multi-key DEL would cross Cluster slots.
            for key in (stream_key(topic, p), index_key(topic, p), tombstones_key(topic, p),
                        epochs_key(topic, p), fence_key(topic, p)):  # fmt: skip
                pipe.delete(key)
            for group in groups:
                pipe.hdel(group_key(group, "offsets"), tp_field(topic, p))
        pipe.hdel(TOPICS_KEY, topic)
        pipe.hdel(RETENTION_KEY, topic)
        pipe.hdel(INCARNATIONS_KEY, topic)
        pipe.srem(COMPACTED_KEY, topic)
        await pipe.execute()
    return partitions


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
