"""The edge's batching producer against a real Redis: what one event-loop turn sends
shares one round trip, every caller gets its own record's offset, and a Redis that
refuses fails every caller instead of leaving one waiting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from pipeline.embedded import free_port
from pipeline.transport.streams import declare_topic, read
from web.producer import BatchingProducer, ProduceError

pytestmark = pytest.mark.integration

TOPIC = "producer-test"
PARTITIONS = 4


class CountingRedis(aioredis.Redis):
    """A real client that counts the pipelines it opens (one per round trip here)."""

    pipelines = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        CountingRedis.pipelines += 1
        return super().pipeline(*args, **kwargs)


@pytest.mark.parametrize("linger_ms", [0.0, 2.0])
async def test_records_sent_together_are_one_round_trip(redis_url: str, linger_ms: float) -> None:
    redis = CountingRedis.from_url(redis_url)
    await declare_topic(redis, TOPIC, PARTITIONS)
    producer = BatchingProducer(redis, TOPIC, PARTITIONS, linger_ms=linger_ms)
    keys = [f"session-{i % 10}".encode() for i in range(200)]
    CountingRedis.pipelines = 0
    results = await asyncio.gather(
        *[producer.send(key, f"v{i}".encode(), 1_000 + i) for i, key in enumerate(keys)]
    )
    assert CountingRedis.pipelines == 1
    assert {p for p, _ in results} == {producer.partition_of(k) for k in keys}
    # Each caller's offset holds its own record, in the order they were sent.
    for partition in range(PARTITIONS):
        stored = {off: value for off, (_, value, _, _) in await read(redis, TOPIC, partition, 0)}
        mine = [(off, i) for i, (p, off) in enumerate(results) if p == partition]
        assert [off for off, _ in mine] == sorted(off for off, _ in mine)
        for off, i in mine:
            assert stored[off] == f"v{i}".encode()
    # Records sent one after another, each after the last was stored: one round trip
    # each, none waiting for company longer than the linger.
    for i in range(3):
        await producer.send(b"session-x", b"late", 2_000 + i)
    assert CountingRedis.pipelines == 4
    await producer.aclose()
    with pytest.raises(ProduceError, match="closed"):
        await producer.send(b"session-x", b"after close", 3_000)
    await redis.aclose()


async def test_a_redis_that_is_gone_fails_every_caller() -> None:
    redis = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    producer = BatchingProducer(redis, TOPIC, PARTITIONS)
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *[producer.send(f"k{i}".encode(), b"v", 1) for i in range(20)],
            return_exceptions=True,
        ),
        10,
    )
    assert all(isinstance(o, ProduceError) for o in outcomes), outcomes
    await producer.aclose()
    await redis.aclose()
