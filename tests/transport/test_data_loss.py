"""Redis restarted from an older snapshot while a worker runs.

The snapshot lacks the last records of every partition; new appends then reuse their
offsets. The worker had read past them: it must notice (a new server run, see
:mod:`pipeline.transport.epochs`), say what was lost, and process every new record.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import redis
from transport_workers import SYSTEM_REDIS, Worker, make_data_dir, produce, read_topic, wait_for

from pipeline.embedded import EmbeddedRedis, free_port
from pipeline.transport.keys import group_key

pytestmark = [pytest.mark.integration]

P = 2


def _committed(client: redis.Redis) -> int:
    offsets = client.hgetall(group_key("lc-test", "offsets"))
    return sum(int(offsets.get(f"events:{p}".encode(), 0)) for p in range(P))


def _seen(client: redis.Redis) -> set[int]:
    return {r["value"]["n"] for r in read_topic(client, "counted", P)}


def _events(first: int, count: int) -> list[tuple[bytes | None, object]]:
    return [(f"k{n % 6}".encode(), {"n": n}) for n in range(first, first + count)]


@pytest.fixture(params=["6.2", "7"])
def server(request: pytest.FixtureRequest) -> Iterator[EmbeddedRedis]:
    data_dir = make_data_dir("lc-data-loss-")
    executable = SYSTEM_REDIS if request.param == "7" else None
    if executable is not None and shutil.which(executable) is None:
        pytest.skip(f"no Redis 7 at {executable}")
    server = EmbeddedRedis(data_dir, port=free_port(), executable=executable)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.timeout(120)
def test_restart_from_an_older_snapshot(server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(server.url)
    worker = Worker(server.url, LC_PARTITIONS=str(P)).start()
    try:
        wait_for(
            lambda: client.hget(group_key("lc-test", "state"), "phase") == b"stable",
            60, "the worker to be assigned", [worker],
        )  # fmt: skip
        produce(client, "events", P, _events(0, 20))
        wait_for(lambda: _committed(client) == 20, 30, "20 events committed", [worker])
        client.save()  # the snapshot Redis will come back from
        snapshot = server.dir / "dump.rdb"
        saved = snapshot.read_bytes()
        produce(client, "events", P, _events(20, 20))
        wait_for(lambda: _committed(client) == 40, 30, "40 events committed", [worker])
        client.close()
        server.stop()  # no save on the way down (--save "")
        snapshot.write_bytes(saved)
        server.start()
        client = redis.Redis.from_url(server.url)
        assert _committed(client) == 20, "Redis did not come back from the snapshot"
        # New records take the offsets of the lost ones (20-39).
        produce(client, "events", P, _events(100, 40))
        # Offsets 20-59 now: the worker is done when it committed them all.
        wait_for(lambda: _committed(client) == 60, 30, "the new events committed", [worker])
        missing = set(range(100, 140)) - _seen(client)
        assert not missing, (
            f"{len(missing)} of 40 events appended after the restart never processed"
        )
        log = worker.log()
        assert "Redis restarted from older data" in log, log[-3000:]
        for p in range(P):
            if f"events[{p}]: Redis restarted from older data" in log:
                assert "offsets" in log
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()


@pytest.mark.timeout(120)
def test_committed_offset_beyond_the_end(server: EmbeddedRedis) -> None:
    """A committed offset Redis no longer has records up to is reset, loudly."""
    client = redis.Redis.from_url(server.url)
    worker = Worker(server.url, LC_PARTITIONS=str(P)).start()
    try:
        wait_for(
            lambda: client.hget(group_key("lc-test", "state"), "phase") == b"stable",
            60, "the worker to be assigned", [worker],
        )  # fmt: skip
        produce(client, "events", P, _events(0, 10))
        wait_for(lambda: _committed(client) == 10, 30, "10 events committed", [worker])
        assert worker.stop() == 0
        # As if the partitions had lost their last records but the commits had not.
        offsets = group_key("lc-test", "offsets")
        for p in range(P):
            client.hset(offsets, f"events:{p}", 1000)
        worker = Worker(server.url, LC_PARTITIONS=str(P)).start()
        wait_for(
            lambda: client.hget(group_key("lc-test", "state"), "phase") == b"stable"
            and "Seek stream partitions to committed offsets" in worker.log(),
            60, "the worker to be assigned", [worker],
        )  # fmt: skip
        produce(client, "events", P, _events(100, 10))
        wait_for(lambda: _committed(client) == 20, 30, "every event committed", [worker])
        missing = set(range(100, 110)) - _seen(client)
        assert not missing, f"{len(missing)} of 10 new events never processed"
        assert "beyond the end of the partition" in worker.log()
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()
