"""Apps with different ``topic_partitions`` agree on a topic nobody declares.

Each app used its own count and none was stored: records a producer with 8 partitions
wrote to partitions 4-7 were never read by a consumer with 4, without a word. The
first app that needs the count now records it (``HSETNX``) and every app follows it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from transport_workers import Worker, read_topic, wait_for

from pipeline.embedded import EmbeddedRedis
from pipeline.transport.keys import TOPICS_KEY

pytestmark = [pytest.mark.integration]

RECORDS = 100


def _entries(client: redis.Redis, topic: str) -> int:
    return sum(client.xlen(k) for k in client.scan_iter(match=f"livecoach:topic:{{{topic}:*"))


@pytest.mark.timeout(120)
def test_apps_with_other_partition_counts_agree(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    producer = Worker(server.url, app_id="lc-producer", LC_ROLE="producer",
                      LC_PARTITIONS="8", LC_SEND=str(RECORDS))  # fmt: skip
    consumer = Worker(server.url, app_id="lc-consumer", LC_ROLE="consumer", LC_PARTITIONS="4")
    try:
        producer.start(script="partitions_app")
        wait_for(lambda: _entries(client, "shared") == RECORDS, 60, "records sent", [producer])
        consumer.start(script="partitions_app")

        def received() -> set[int]:
            return {r["value"]["n"] for r in read_topic(client, "shared-out", 1)}

        try:
            wait_for(lambda: len(received()) == RECORDS, 60, "every record", [consumer])
        except AssertionError as exc:
            raise AssertionError(f"{len(received())} of {RECORDS} received\n{exc}") from None
        assert client.hget(TOPICS_KEY, "shared") == b"8"  # the first app's count
        assert consumer.stop() == 0
        assert producer.stop() == 0
    finally:
        consumer.cleanup()
        producer.cleanup()
        client.close()
