"""Redis restarted from an older snapshot while a worker runs.

The snapshot lacks the last records of every partition; new appends then reuse their
offsets. The worker had read past them: it must notice (a new server run, see
:mod:`pipeline.transport.epochs`), say what was lost, and process every new record.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from transport_workers import (
    FAUST,
    HERE,
    SYSTEM_REDIS,
    Worker,
    make_data_dir,
    produce,
    read_topic,
    wait_for,
)

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


def _answers(log: Path) -> list[int]:
    """The questions an ``ask-loop`` client got a right answer to, in order."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [
        int(n) for n, a in re.findall(r"^answer (\d+): (\d+)$", text, re.M) if int(a) == 2 * int(n)
    ]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_client_reads_on_after_an_older_snapshot(server: EmbeddedRedis) -> None:
    """A client-only app (no group to rejoin) rewinds its reply stream after data loss.

    Replies appended after Redis came back from an older snapshot take offsets the
    client had already read past; a client that kept its position never saw them and
    every later ``ask()`` timed out.
    """
    client = redis.Redis.from_url(server.url)
    worker = Worker(server.url, LC_PARTITIONS=str(P)).start()
    log = worker.dir / "client.log"
    asker: subprocess.Popen[bytes] | None = None
    try:
        wait_for(
            lambda: client.hget(group_key("lc-test", "state"), "phase") == b"stable",
            60, "the worker to be assigned", [worker],
        )  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "LC_BROKER": server.url,
            "LC_PARTITIONS": str(P),
            "LC_DATA_DIR": str(worker.dir / "client-data"),
            "LC_ASK_COUNT": "100000",
            "LC_ASK_INTERVAL": "0.05",
            "LC_ASK_TIMEOUT": "20",
        }
        with log.open("ab") as out:
            asker = subprocess.Popen(
                [FAUST, "-A", "faust_app", "ask-loop"],
                cwd=worker.dir, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: len(_answers(log)) >= 5, 60, "the client's first answers", [worker])
        client.save()  # the snapshot Redis will come back from
        snapshot = server.dir / "dump.rdb"
        saved = snapshot.read_bytes()
        at_save = len(_answers(log))
        # The client reads its replies past what the snapshot holds.
        wait_for(lambda: len(_answers(log)) >= at_save + 10, 30, "answers after the save", [worker])
        client.close()
        server.stop()
        snapshot.write_bytes(saved)
        server.start()
        client = redis.Redis.from_url(server.url)
        last_before = max(_answers(log))
        wait_for(
            lambda: sum(1 for n in _answers(log) if n > last_before) >= 20,
            90, "20 answers to questions asked after the restart", [worker],
        )  # fmt: skip
        assert asker.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        if asker is not None and asker.poll() is None:
            asker.kill()
            asker.wait()
        worker.cleanup()
        client.close()
