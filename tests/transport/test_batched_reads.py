"""Batched reads (``pipeline.transport.read_in_batches``) on a real Redis.

A backlog read in batches reaches the agent as lists of consecutive values, every value
once, and the consumer commits up to the end of what it processed: the acks of a batch
cover all of its entries, so a restarted worker reads nothing twice.
"""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from transport_workers import Worker, produce, read_topic, wait_for

from pipeline.transport import streams
from pipeline.transport.keys import group_key

pytestmark = pytest.mark.integration

P = 2
N = 2000


def _committed(client: redis.Redis) -> dict[str, int]:
    raw = client.hgetall(group_key("lc-batched", "offsets"))
    return {k.decode(): int(v) for k, v in raw.items() if k.decode().startswith("events:")}


def test_backlog_arrives_in_batches_once_and_is_committed(versioned_url: str) -> None:
    client = redis.Redis.from_url(versioned_url)
    produce(client, "events", P, [(str(i % 50).encode(), {"n": i}) for i in range(N)])
    ends = {f"events:{p}": client.xlen(streams.stream_key("events", p)) for p in range(P)}
    assert sum(ends.values()) == N
    worker = Worker(versioned_url, app_id="lc-batched").start(script="batched_app")
    try:
        out = wait_for(
            lambda: (r := read_topic(client, "forwarded", P)) and len(r) >= N and r,
            60,
            "every value forwarded",
            [worker],
        )
        seen = Counter(rec["value"]["n"] for rec in out)
        assert sorted(seen) == list(range(N))
        assert max(seen.values()) == 1
        assert max(rec["value"]["batch"] for rec in out) > 10  # a backlog is read in batches
        # Each value comes with the offset of the entry that held it.
        where = {
            (r["partition"], r["offset"]): r["value"]["n"] for r in read_topic(client, "events", P)
        }
        got = {(r["value"]["partition"], r["value"]["offset"]): r["value"]["n"] for r in out}
        assert got == where
        wait_for(lambda: _committed(client) == ends, 30, f"offsets committed to {ends}", [worker])
        assert worker.stop() == 0
        # A second worker starts from the committed offsets: nothing is read again.
        again = Worker(versioned_url, app_id="lc-batched").start(script="batched_app")
        try:
            produce(client, "events", P, [(b"late", {"n": N})])
            wait_for(
                lambda: len(read_topic(client, "forwarded", P)) >= N + 1, 60, "the late value",
                [again],
            )  # fmt: skip
            final = Counter(rec["value"]["n"] for rec in read_topic(client, "forwarded", P))
            assert max(final.values()) == 1 and len(final) == N + 1
        finally:
            again.stop()
            again.cleanup()
    finally:
        worker.cleanup()
        client.close()
