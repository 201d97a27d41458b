"""Tombstones, topic deletion and re-creation, stored partition counts, retention
bounded by commits, and compaction dropping tombstones: Redis 6.2 and 7."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from pipeline.transport import streams
from pipeline.transport.compaction import Compactor
from pipeline.transport.keys import (
    GROUPS_KEY,
    TOPICS_KEY,
    group_key,
    index_key,
    stream_key,
    tombstones_key,
    tp_field,
)

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000


async def _keys_of(r: aioredis.Redis, topic: str) -> list[str]:
    return sorted([k.decode() async for k in r.scan_iter(match=f"*{{{topic}:*")])


async def test_tombstone_round_trip(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        entries: list[streams.Entry] = [
            (b"k", b"v", None, T0_MS),
            (b"k", None, None, T0_MS + 1),  # a table delete
            (b"e", b"", None, T0_MS + 2),  # an empty value is not a delete
        ]
        assert await streams.append(r, "c", 0, entries) == [0, 1, 2]
        raw = await r.xrange(stream_key("c", 0), "0-2", "0-2")
        assert b"v" not in raw[0][1], "a tombstone has no value field"
        got = [(o, k, v) for o, (k, v, _, _) in await streams.read(r, "c", 0, 0)]
        assert got == [(0, b"k", b"v"), (1, b"k", None), (2, b"e", b"")]
        many = await streams.read_many(r, {("c", 0): 1}, block_ms=10)
        assert many[("c", 0)][0][1][1] is None
    finally:
        await r.aclose()


async def test_compaction_after_topic_recreated_by_hand(versioned_url: str) -> None:
    """What the old TopicError told operators to do: delete the count and the streams."""
    r = aioredis.Redis.from_url(versioned_url)
    try:
        topic = "t-changelog"
        compactor = Compactor(r)
        await streams.declare_topic(r, topic, 1)
        await streams.append(r, topic, 0, [(b"a", b"1", None, T0_MS), (b"b", b"1", None, T0_MS),
                                           (b"a", b"2", None, T0_MS)])  # fmt: skip
        assert await compactor.compact(topic, 0) == 1
        await r.delete(stream_key(topic, 0))
        await r.hdel(TOPICS_KEY, topic)
        await streams.declare_topic(r, topic, 1)
        # The new life: c, d, e, then a at offset 3 (id 0-4, after the old cursor 0-3).
        await streams.append(
            r, topic, 0, [(k, b"new", None, T0_MS) for k in (b"c", b"d", b"e", b"a")]
        )
        await compactor.compact(topic, 0)
        keys = [k for _, (k, _, _, _) in await streams.read(r, topic, 0, 0)]
        assert keys == [b"c", b"d", b"e", b"a"], f"compaction deleted another key's value: {keys}"
    finally:
        await r.aclose()


async def test_compaction_after_stream_shrank_behind_cursor(versioned_url: str) -> None:
    """A stream deleted by hand (count and incarnation kept): the index is rebuilt."""
    r = aioredis.Redis.from_url(versioned_url)
    try:
        topic = "s-changelog"
        compactor = Compactor(r)
        await streams.append(r, topic, 0, [(b"k%d" % i, b"1", None, T0_MS) for i in range(5)])
        await compactor.compact(topic, 0)
        await r.delete(stream_key(topic, 0))
        await streams.append(r, topic, 0, [(b"x", b"1", None, T0_MS), (b"k1", b"2", None, T0_MS)])
        await compactor.compact(topic, 0)
        keys = [k for _, (k, _, _, _) in await streams.read(r, topic, 0, 0)]
        assert keys == [b"x", b"k1"]
        # Gone altogether: the index goes with it.
        await r.delete(stream_key(topic, 0))
        await compactor.compact(topic, 0)
        assert not await r.exists(index_key(topic, 0))
    finally:
        await r.aclose()


async def test_delete_topic_removes_everything(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        for topic in ("gone-changelog", "kept"):
            await streams.declare_topic(r, topic, 2)
            await streams.set_retention(r, topic, streams.Retention(max_age_ms=1000))
            for p in range(2):
                await streams.append(
                    r, topic, p, [(b"a", b"1", None, T0_MS), (b"a", None, None, T0_MS)]
                )
                await Compactor(r).compact(topic, p)
                await r.hset(group_key("app", "offsets"), tp_field(topic, p), 2)
        await streams.register_group(r, "app")
        before = await _keys_of(r, "gone-changelog")
        # Per partition: stream, compaction index, tombstones, server-run epochs, and the
        # sequences of the producer that appended.
        assert len(before) == 10
        assert await streams.delete_topic(r, "gone-changelog") == 2
        assert await _keys_of(r, "gone-changelog") == []
        assert await streams.partition_count(r, "gone-changelog") is None
        assert await streams.get_retention(r, "gone-changelog") is None
        offsets = await r.hgetall(group_key("app", "offsets"))
        assert sorted(offsets) == [b"kept:0", b"kept:1"]
        assert len(await _keys_of(r, "kept")) == 10
        # Declared again: a new life, compacted from scratch.
        await streams.declare_topic(r, "gone-changelog", 4)
        assert await streams.partition_count(r, "gone-changelog") == 4
    finally:
        await r.aclose()


async def test_topic_error_names_delete_topic(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        await streams.declare_topic(r, "x", 4)
        with pytest.raises(streams.TopicError, match=r"delete_topic\(redis, 'x'\)"):
            await streams.declare_topic(r, "x", 8)
    finally:
        await r.aclose()


async def test_first_partition_count_wins(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        assert await streams.ensure_partition_count(r, "undeclared", 8) == 8
        assert await streams.ensure_partition_count(r, "undeclared", 4) == 8
        assert await streams.declare_topic(r, "undeclared", 8) == 8
    finally:
        await r.aclose()


async def test_compaction_drops_tombstones_after_delete_retention(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        topic = "d-changelog"
        compactor = Compactor(r)
        entries: list[streams.Entry] = [
            (b"gone", b"1", None, T0_MS),
            (b"gone", None, None, T0_MS),
            (b"back", b"1", None, T0_MS),
            (b"back", None, None, T0_MS),
            (b"back", b"2", None, T0_MS),  # set again after its delete
            (b"kept", b"1", None, T0_MS),
            (b"legacy", b"1", None, T0_MS),
            (b"legacy", b"", None, T0_MS),  # a delete as bb43412 wrote it
        ]
        await streams.append(r, topic, 0, entries)
        await compactor.compact(topic, 0, now_ms=T0_MS, delete_retention_s=10)
        held = [(k, v) for _, (k, v, _, _) in await streams.read(r, topic, 0, 0)]
        assert held == [(b"gone", None), (b"back", b"2"), (b"kept", b"1"), (b"legacy", b"")]
        # Within the delete retention the tombstone stays (a reader sees the delete).
        await compactor.compact(topic, 0, now_ms=T0_MS + 9_000, delete_retention_s=10)
        assert await r.xlen(stream_key(topic, 0)) == 4
        await compactor.compact(topic, 0, now_ms=T0_MS + 11_000, delete_retention_s=10)
        held = [(k, v) for _, (k, v, _, _) in await streams.read(r, topic, 0, 0)]
        assert held == [(b"back", b"2"), (b"kept", b"1")]
        index = await r.hgetall(index_key(topic, 0))
        assert sorted(k for k in index if k.startswith(b"k:")) == [b"k:back", b"k:kept"]
        assert await r.zcard(tombstones_key(topic, 0)) == 0
        assert compactor.tombstones_dropped == 2
    finally:
        await r.aclose()


async def test_deleted_keys_leave_nothing_behind(versioned_url: str) -> None:
    """Sessions come and go: entries and index stay bounded by the live keys."""
    r = aioredis.Redis.from_url(versioned_url)
    try:
        topic = "sessions-changelog"
        compactor = Compactor(r)
        now = T0_MS
        for round_ in range(20):
            batch: list[streams.Entry] = []
            for i in range(50):
                key = b"s%d" % (round_ * 50 + i)
                batch += [(key, b"state" * 20, None, now)] * 3 + [(key, None, None, now)]
            batch += [(b"forever", b"%d" % round_, None, now)]
            await streams.append(r, topic, 0, batch)
            await compactor.compact(topic, 0, now_ms=now, delete_retention_s=60)
            now += 30_000
        await compactor.compact(topic, 0, now_ms=now + 60_000, delete_retention_s=60)
        assert await r.xlen(stream_key(topic, 0)) == 1
        assert await r.hlen(index_key(topic, 0)) == 3  # cursor, incarnation, "forever"
        assert await r.zcard(tombstones_key(topic, 0)) == 0
    finally:
        await r.aclose()


async def test_age_retention_stops_at_lowest_commit(
    versioned_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        await streams.declare_topic(r, "samples", 2)
        await streams.set_retention(r, "samples", streams.Retention(max_age_ms=50))
        for p in range(2):
            await streams.append(
                r, "samples", p, [(None, b"x", None, T0_MS + i) for i in range(100)]
            )
        now = T0_MS + 100  # entries 0..49 are past the window
        await r.hset(group_key("slow", "offsets"), mapping={"samples:0": 20, "other:0": 0})
        await r.hset(group_key("fast", "offsets"), mapping={"samples:0": 70, "samples:1": 90})
        await r.hset(group_key("idle", "offsets"), mapping={"samples:1": 5})
        for group in ("slow", "fast"):
            await streams.register_group(r, group, now_ms=now)
        await streams.register_group(r, "idle", now_ms=now - 8 * 24 * 3600 * 1000)
        with caplog.at_level(logging.WARNING):
            removed = await streams.apply_age_retention(r, now_ms=now)
        assert [await streams.earliest(r, "samples", p) for p in range(2)] == [20, 50]
        assert removed == 70
        assert "not seen for" in caplog.text and "idle" in caplog.text
        assert "samples[0] keeps entries older than 50 ms from offset 20" in caplog.text
        assert "group(s) slow committed no further" in caplog.text
        assert "samples[1] keeps" not in caplog.text  # fast is past the window there
        # The slow group catches up: the window applies again.
        await r.hset(group_key("slow", "offsets"), "samples:0", 60)
        await streams.apply_age_retention(r, now_ms=now)
        assert await streams.earliest(r, "samples", 0) == 50
        assert await r.zscore(GROUPS_KEY, "fast") == now
    finally:
        await r.aclose()


async def test_age_retention_bounds_entries(versioned_url: str) -> None:
    """Appends for many windows: what is held stays about one window."""
    r = aioredis.Redis.from_url(versioned_url)
    try:
        await streams.declare_topic(r, "live", 1)
        await streams.set_retention(r, "live", streams.Retention(max_age_ms=10_000))
        lengths = []
        for second in range(60):
            now = T0_MS + second * 1000
            await streams.append(r, "live", 0, [(None, b"e", None, now)] * 100)
            await streams.apply_age_retention(r, now_ms=now)
            lengths.append(await r.xlen(stream_key("live", 0)))
        assert max(lengths[15:]) == 1100  # 11 seconds of 100 entries
        assert await streams.highwater(r, "live", 0) == 6000
    finally:
        await r.aclose()
