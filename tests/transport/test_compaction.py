"""Changelog compaction keeps about one entry per key; recovery reads about that many."""

from __future__ import annotations

import json
import time

import pytest
import redis
import redis.asyncio as aioredis
from transport_workers import Worker, produce, read_topic, wait_for

from pipeline.transport import streams
from pipeline.transport.compaction import Compactor

pytestmark = pytest.mark.integration

KEYS = 1000
P = 4


async def _updates(r: aioredis.Redis, topic: str, partition: int, updates: int, start: int) -> None:
    now = int(time.time() * 1000)
    for base in range(0, updates, 5000):
        entries: list[streams.Entry] = [
            (json.dumps(f"k{i % KEYS}").encode(), str(start + i).encode(), None, now)
            for i in range(base, min(updates, base + 5000))
        ]
        await streams.append(r, topic, partition, entries)


async def test_compaction_keeps_latest_per_key(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    try:
        topic = "app-table-changelog"
        await _updates(r, topic, 0, 50_000, 0)
        compactor = Compactor(r)
        started = time.perf_counter()
        deleted = await compactor.compact(topic, 0)
        elapsed = time.perf_counter() - started
        key = streams.stream_key(topic, 0)
        assert deleted == 49_000
        assert await r.xlen(key) == KEYS
        assert await streams.highwater(r, topic, 0) == 50_000  # offsets unchanged
        latest = {}
        for offset, (k, v, _, _) in await streams.read(r, topic, 0, 0, count=10_000):
            latest[json.loads(k)] = int(v)
            assert offset == int(v)
        assert latest == {f"k{i}": 49_000 + i for i in range(KEYS)}
        # More updates, compacted incrementally from the cursor.
        await _updates(r, topic, 0, 5_000, 50_000)
        assert await compactor.compact(topic, 0) == 5_000
        assert await r.xlen(key) == KEYS
        print(f"\ncompaction: 50,000 updates to {KEYS} keys compacted in {elapsed:.2f} s")
    finally:
        await r.aclose()


def test_table_recovers_from_compacted_changelog(redis_url: str) -> None:
    import asyncio

    async def fill() -> int:
        r = aioredis.Redis.from_url(redis_url)
        try:
            compactor = Compactor(r)
            for p in range(P):
                await streams.declare_topic(r, "lc-test-counts-changelog", P)
                await _updates(r, "lc-test-counts-changelog", p, 10_000, 0)
                await compactor.compact("lc-test-counts-changelog", p)
            return sum(
                [await r.xlen(streams.stream_key("lc-test-counts-changelog", p)) for p in range(P)]
            )
        finally:
            await r.aclose()

    # Every partition holds 10,000 updates of all 1000 keys (not how Faust partitions,
    # but recovery reads whatever a partition holds): the last value of kN is 9000 + N.
    remaining = asyncio.run(fill())
    assert remaining == P * KEYS
    client = redis.Redis.from_url(redis_url)
    worker = Worker(redis_url).start()
    try:
        keys = [b"k1", b"k500", b"k999"]
        produce(client, "events", P, [(k, {"n": 0}) for k in keys])
        counted = wait_for(
            lambda: len(r := read_topic(client, "counted", P)) >= 3 and r, 60, "3 events", [worker]
        )
        counts = {r["value"]["key"]: r["value"]["count"] for r in counted}
        assert counts == {"k1": 9002, "k500": 9501, "k999": 10_000}
        print(f"\nrecovery read {remaining} changelog entries for {P * 10_000} updates")
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()
