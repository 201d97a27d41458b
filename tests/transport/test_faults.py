"""Faults: Redis unreachable at start-up, and restarted (with AOF) mid-run."""

from __future__ import annotations

import shutil
import time

import pytest
import redis
from transport_workers import SYSTEM_REDIS, Feeder, Worker, make_data_dir, read_topic, wait_for

from pipeline.embedded import EmbeddedRedis, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

P = 4


def _seen(client: redis.Redis) -> set[int]:
    return {r["value"]["n"] for r in read_topic(client, "counted", P)}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("version", ["6.2", "7"])
def test_unreachable_at_start_then_restarted_with_aof(version: str) -> None:
    data_dir = make_data_dir("lc-faults-")
    port = free_port()
    executable = SYSTEM_REDIS if version == "7" else None
    server = EmbeddedRedis(data_dir, port=port, appendonly=True, executable=executable)
    url = f"redis://:{server.prepare()}@127.0.0.1:{port}/0"  # the password, made early
    worker = Worker(url, LC_SESSION_TIMEOUT="5").start()
    feeder = None
    client = None
    try:
        # Nothing listens yet: the worker retries with backoff and says where.
        wait_for(lambda: "unreachable" in worker.log(), 30, "a retry message", [worker])
        assert f"127.0.0.1:{port}" in worker.log()
        server.start()
        client = redis.Redis.from_url(url)
        feeder = Feeder(url, "events", P, rate=200, keys=8, limit=100_000).start()
        wait_for(lambda: len(_seen(client)) > 200, 60, "events flowing", [worker])
        # Restart Redis (AOF on) while events flow; the feeder pauses meanwhile.
        feeder.stop()
        before = feeder.sent
        server.stop()
        time.sleep(2)  # the fault: Redis stays down for two seconds
        server.start()
        feeder = Feeder(url, "events", P, rate=200, keys=8, limit=100_000)
        feeder.sent = before  # continue the numbering
        feeder.start()
        feeder.wait_sent(before + 800)
        feeder.stop()
        total = feeder.sent
        wait_for(lambda: _seen(client) >= set(range(total)), 60, "every event", [worker])
        print(f"\nfaults: {total} events across a Redis restart, none missing")
        assert worker.stop() == 0
    finally:
        if feeder is not None:
            feeder.stop()
        worker.cleanup()
        if client is not None:
            client.close()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
