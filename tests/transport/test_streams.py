"""The Faust-free stream API against real Redis 6.2 and 7."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
from aiokafka.partitioner import murmur2 as aiokafka_murmur2  # type: ignore[import-untyped]

from pipeline.transport import streams
from pipeline.transport.errors import TopicError
from pipeline.transport.keys import epochs_key

pytestmark = pytest.mark.integration


def test_murmur2_matches_kafka() -> None:
    for key in [b"", b"a", b"21", b"foobar", b"a-little-bit-long-string", b"session-42" * 7]:
        assert streams.murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF
    # Known values from Kafka's own partitioner tests.
    assert streams.partition_for_key(b"foobar", 1000) == (
        (aiokafka_murmur2(b"foobar") & 0x7FFFFFFF) % 1000
    )


def test_ids_and_keys() -> None:
    assert streams.stream_id(0) == "0-1"
    assert streams.offset_of(b"0-1") == 0
    assert streams.offset_of("0-42") == 41
    assert streams.stream_key("samples", 3) == "livecoach:topic:{samples:3}"


async def test_append_consecutive_offsets(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        assert await streams.highwater(r, "t", 0) == 0
        assert await streams.earliest(r, "t", 0) == 0
        now = int(time.time() * 1000)
        offsets = await streams.append(
            r, "t", 0, [(b"k", b'{"a": 1}', {"h": b"x"}, now), (None, b"v2", None, now + 1)]
        )
        assert offsets == [0, 1]
        assert await streams.append(r, "t", 0, [(b"k3", b"v3", None, now)]) == [2]
        assert await streams.highwater(r, "t", 0) == 3
        records = await streams.read(r, "t", 0, 1)
        assert [o for o, _ in records] == [1, 2]
        assert records[0][1] == (None, b"v2", {}, now + 1)
        first = await streams.read(r, "t", 0, 0, count=1)
        assert first[0][1] == (b"k", b'{"a": 1}', {"h": b"x"}, now)
        # Trimming keeps offsets going.
        await r.xtrim(streams.stream_key("t", 0), maxlen=0)
        assert await streams.earliest(r, "t", 0) == 3
        assert await streams.append(r, "t", 0, [(b"k", b"v", None, now)]) == [3]
        # Blocking tail.
        tail = await streams.read(r, "t", 0, 4, block_ms=50)
        assert tail == []
        # Several partitions in one XREAD.
        await streams.append(r, "t", 1, [(b"a", b"p1", None, now)])
        many = await streams.read_many(r, {("t", 0): 3, ("t", 1): 0}, block_ms=50)
        assert {tp: [o for o, _ in recs] for tp, recs in many.items()} == {
            ("t", 0): [3],
            ("t", 1): [0],
        }
        assert await streams.read_many(r, {("t", 0): 4, ("t", 1): 1}, block_ms=20) == {}
    finally:
        await r.aclose()


async def test_script_reloaded_after_flush(versioned_url: str) -> None:
    """The append (a script on 6.2, a function on 7) is loaded again once Redis lost it,
    and the run id the function keeps is this server's (the first append of the run put
    it on the partition's epochs list)."""
    r = aioredis.Redis.from_url(versioned_url)
    try:
        assert await streams.append(r, "t", 1, [(None, b"a", None, 1)]) == [0]
        await r.script_flush()
        if int((await r.info("server"))["redis_version"].split(".")[0]) >= 7:
            await r.function_flush()
        assert await streams.append(r, "t", 1, [(None, b"b", None, 2)]) == [1]
        run = (await r.info("server"))["run_id"]
        assert await r.lrange(epochs_key("t", 1), 0, -1) == [f"{run}:0".encode()]
    finally:
        await r.aclose()


async def test_topics_and_retention(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        assert await streams.declare_topic(r, "live", 4) == 4
        assert await streams.declare_topic(r, "live", 4) == 4
        with pytest.raises(TopicError, match="exists with 4 partitions"):
            await streams.declare_topic(r, "live", 8)
        assert await streams.partition_count(r, "live") == 4
        await streams.set_retention(r, "live", streams.Retention(maxlen=100, max_age_ms=1000))
        assert await streams.get_retention(r, "live") == streams.Retention(100, 1000)
        await streams.append(r, "live", 0, [(None, b"x", None, 1000 + i) for i in range(500)])
        assert await r.xlen(streams.stream_key("live", 0)) < 300
        # Age: entries stamped 0..99 ms, keep the last 10 ms.
        await streams.append(r, "old", 0, [(None, b"x", None, i) for i in range(100)])
        removed = await streams.trim_by_age(r, "old", 0, 10, now_ms=100)
        assert removed == 90
        assert await streams.earliest(r, "old", 0) == 90
        # Every topic with an age retention at once (what the group leader runs).
        await streams.declare_topic(r, "aged", 2)
        await streams.set_retention(r, "aged", streams.Retention(max_age_ms=50))
        for p in range(2):
            await streams.append(r, "aged", p, [(None, b"x", None, i) for i in range(100)])
        assert await streams.apply_age_retention(r, now_ms=100) == 100
        assert [await streams.earliest(r, "aged", p) for p in range(2)] == [50, 50]
    finally:
        await r.aclose()
