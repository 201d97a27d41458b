"""A write Redis refuses stops the commit: offsets never go past a lost write.

Faust commits right after ``producer.flush()``; a flush that swallowed send errors let
it commit events whose output (or changelog) writes had failed, so nobody would ever
process them again.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from transport_workers import Worker, produce, read_topic, wait_for

from pipeline.embedded import EmbeddedRedis
from pipeline.transport import streams
from pipeline.transport.keys import group_key, stream_key

pytestmark = [pytest.mark.integration]

P = 2


def _committed(client: redis.Redis, partition: int) -> int:
    return int(client.hget(group_key("lc-test", "offsets"), f"events:{partition}") or 0)


@pytest.mark.timeout(120)
def test_no_commit_past_a_failed_write(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    worker = Worker(server.url, LC_PARTITIONS=str(P)).start()
    keys = [f"k{i}".encode() for i in range(40)]
    on_0 = [k for k in keys if streams.partition_for_key(k, P) == 0][:5]
    try:
        wait_for(
            lambda: client.hget(group_key("lc-test", "state"), "phase") == b"stable",
            60, "the worker to be assigned", [worker],
        )  # fmt: skip
        produce(client, "events", P, [(on_0[0], {"n": -1})])
        wait_for(lambda: _committed(client, 0) == 1, 30, "the first commit", [worker])
        # The output partition of these events now refuses every append (WRONGTYPE).
        out = stream_key("counted", 0)
        client.delete(out)
        client.set(out, "not a stream")
        produce(client, "events", P, [(k, {"n": i}) for i, k in enumerate(on_0)])
        wait_for(lambda: "WRONGTYPE" in worker.log(), 30, "Redis to refuse the writes")
        # A commit now would go past the lost writes. The worker tries every second.
        wait_for(
            lambda: _committed(client, 0) > 1 or "could not be written" in worker.log(),
            30, "a commit to be tried",
        )  # fmt: skip
        worker.stop()
        assert _committed(client, 0) == 1, (
            f"committed {_committed(client, 0)} of events[0]: past the events whose "
            "outputs were never written"
        )
        client.delete(out)
        assert read_topic(client, "counted", P) == []
        assert "not committing past them" in worker.log()
    finally:
        worker.cleanup()
        client.close()
