"""Lost replies: a batch that Redis appended but whose reply never came back.

A proxy between the client and Redis (:mod:`lossy_proxy`) forwards an append, lets
Redis run it and resets the connection instead of passing the reply on; redis-py's
retry then sends the same batch again. Appends are idempotent (a producer id and a
batch sequence per partition), so the batch is in the stream once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import redis
from lossy_proxy import LossyProxy
from transport_workers import Worker, produce, read_topic, wait_for

from pipeline.embedded import EmbeddedRedis
from pipeline.transport import streams
from pipeline.transport.clients import redis_client
from pipeline.transport.keys import group_key, stream_key
from web.producer import BatchingProducer

pytestmark = [pytest.mark.integration]

P = 4


@pytest.fixture
def proxy(versioned_server: EmbeddedRedis, versioned_url: str) -> Iterator[LossyProxy]:
    lossy = LossyProxy(versioned_server.port, versioned_server.password).start()
    yield lossy
    lossy.stop()


async def test_append_many_not_repeated_after_a_lost_reply(proxy: LossyProxy) -> None:
    r = redis_client(proxy.url)  # the transport's client, with redis-py's retry
    now = 1_700_000_000_000
    try:
        proxy.lose_reply_to(stream_key("lost", 0).encode())
        batch: list[streams.Entry] = [(b"k", b"a", None, now), (None, b"b", None, now)]
        offsets = await streams.append_many(r, "lost", {0: [*batch, (None, b"c", None, now)]})
        assert proxy.lost == 1, "the proxy did not lose the reply"
        assert offsets == {0: [0, 1, 2]}
        assert await r.xlen(stream_key("lost", 0)) == 3, "the resent batch was appended twice"
        assert await streams.append(r, "lost", 0, [(None, b"d", None, now)]) == [3]
        # The producer's state expires (a producer that went away costs nothing).
        from pipeline.transport.keys import producer_key

        keys = [k async for k in r.scan_iter(match=producer_key("lost", 0, "*"))]
        ttls = [await r.ttl(k) for k in keys]
        assert ttls and all(0 < ttl <= 3600 for ttl in ttls), ttls
    finally:
        await r.aclose()


async def test_web_producer_not_repeated_after_a_lost_reply(proxy: LossyProxy) -> None:
    r = redis_client(proxy.url)
    producer = BatchingProducer(r, "edge", P, linger_ms=5.0)
    try:
        proxy.lose_reply_to(b"{edge:")
        sent = await asyncio.gather(
            *(producer.send(f"s{i}".encode(), b"{}", 1_700_000_000_000 + i) for i in range(12))
        )
        assert proxy.lost == 1, "the proxy did not lose the reply"
        lengths = [await r.xlen(stream_key("edge", p)) for p in range(P)]
        assert sum(lengths) == 12, f"12 sends, {lengths} entries per partition"
        assert sorted(sent) == sorted(set(sent)), "two records got one offset"
    finally:
        await producer.aclose()
        await r.aclose()


@pytest.mark.timeout(120)
def test_faust_producer_not_repeated_after_a_lost_reply(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = private_server_factory()
    proxy = LossyProxy(server.port, server.password).start()
    client = redis.Redis.from_url(server.url)
    worker = Worker(proxy.url, LC_PARTITIONS=str(P)).start()
    try:
        wait_for(
            lambda: client.hget(group_key("lc-test", "state"), "phase") == b"stable",
            60, "the worker to be assigned", [worker],
        )  # fmt: skip
        produce(client, "events", P, [(b"warm", {"n": -1})])
        wait_for(lambda: read_topic(client, "counted", P), 30, "the first output", [worker])
        proxy.lose_reply_to(b"{counted:")
        produce(client, "events", P, [(f"k{i}".encode(), {"n": i}) for i in range(20)])
        wait_for(lambda: proxy.lost, 30, "the proxy to lose a reply", [worker])
        committed = group_key("lc-test", "offsets")

        def all_committed() -> bool:
            total = 0
            for p in range(P):
                total += int(client.hget(committed, f"events:{p}") or 0)
            return total == 21

        wait_for(all_committed, 30, "every event committed", [worker])
        outputs = [r["value"]["n"] for r in read_topic(client, "counted", P)]
        assert sorted(outputs) == [-1, *range(20)], (
            f"{len(outputs)} outputs for 21 events: the resent batch was appended twice"
        )
        assert "not appended again" in worker.log()
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        proxy.stop()
        client.close()
