"""Two and three workers in one group: even split, take-over after a kill, fencing.

Each worker is a ``faust -A faust_app worker`` process with its own member id (its
web server's address). Session timeout 5 s.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis
from transport_workers import Feeder, Worker, published_assignment, read_topic, wait_for

from pipeline.embedded import EmbeddedRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

P = 6
SESSION_TIMEOUT_S = 5.0


def _member(worker: Worker) -> str:
    import socket

    return f"{socket.gethostname()}:127.0.0.1:{worker.web_port}"


def _split(client: redis.Redis, workers: list[Worker]) -> dict[str, list[int]] | None:
    _, assignment = published_assignment(client)
    if sorted(assignment) != sorted(_member(w) for w in workers):
        return None
    sizes = [len(ps) for ps in assignment.values()]
    if sum(sizes) != P:
        return None
    return assignment


def _seen(client: redis.Redis) -> set[int]:
    return {r["value"]["n"] for r in read_topic(client, "counted", P)}


def _env() -> dict[str, str]:
    return {"LC_PARTITIONS": str(P), "LC_SESSION_TIMEOUT": str(SESSION_TIMEOUT_S)}


@pytest.mark.timeout(180)
def test_two_workers_split_and_take_over(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    workers = [Worker(server.url, **_env()).start() for _ in range(2)]
    feeder = Feeder(server.url, "events", P, rate=200, keys=12, limit=100_000)
    try:
        split = wait_for(lambda: _split(client, workers), 60, "an even split", workers)
        assert sorted(len(ps) for ps in split.values()) == [3, 3], split
        feeder.start()
        wait_for(lambda: len(_seen(client)) >= 300, 60, "events processed", workers)
        victim, survivor = workers
        killed_at = time.monotonic()
        victim.kill()
        wait_for(lambda: _split(client, [survivor]), 30, "the survivor to take over", [survivor])
        reassigned_s = time.monotonic() - killed_at
        sent = feeder.sent
        wait_for(
            lambda: _seen(client) >= set(range(sent)),
            30, "every event sent before the take-over", [survivor],
        )  # fmt: skip
        caught_up_s = time.monotonic() - killed_at
        print(
            f"\ntwo workers: split {split}; after kill -9 partitions reassigned in "
            f"{reassigned_s:.1f} s, caught up in {caught_up_s:.1f} s "
            f"(session timeout {SESSION_TIMEOUT_S} s)"
        )
        assert reassigned_s <= SESSION_TIMEOUT_S + 3
        feeder.stop()
        total = feeder.sent
        wait_for(
            lambda: _seen(client) >= set(range(total)),
            30, "every event", [survivor],
        )  # fmt: skip
        assert survivor.stop() == 0
    finally:
        feeder.stop()
        for w in workers:
            w.cleanup()
        client.close()


@pytest.mark.timeout(180)
def test_three_workers_and_a_frozen_one(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    workers = [Worker(server.url, **_env()).start() for _ in range(3)]
    feeder = Feeder(server.url, "events", P, rate=200, keys=12, limit=100_000)
    try:
        split = wait_for(lambda: _split(client, workers), 60, "an even split", workers)
        assert sorted(len(ps) for ps in split.values()) == [2, 2, 2], split
        feeder.start()
        wait_for(lambda: len(_seen(client)) >= 200, 60, "events processed", workers)
        frozen, *others = workers
        old_generation, _ = published_assignment(client)
        old_partitions = set(split[_member(frozen)])
        frozen.signal(signal.SIGSTOP)
        stopped_at = feeder.sent
        wait_for(lambda: _split(client, others), 30, "the others to take over", others)
        feeder.wait_sent(feeder.sent + 200)  # events pass the frozen worker by
        frozen.signal(signal.SIGCONT)
        resumed_at = feeder.sent
        # It rejoins as a new member: a fresh generation with three members again.
        wait_for(lambda: _split(client, workers), 30, "the frozen worker to rejoin", workers)
        feeder.stop()
        total = feeder.sent
        wait_for(
            lambda: _seen(client) >= set(range(total)),
            30, "every event", workers,
        )  # fmt: skip
        outputs = read_topic(client, "counted", P)
        stale = [
            r["value"]
            for r in outputs
            if r["value"]["pid"] == frozen.pid
            and r["value"]["gen"] <= old_generation
            and r["value"]["n"] >= stopped_at
        ]
        print(
            f"\nthree workers: split {split}; froze {_member(frozen)} (partitions "
            f"{sorted(old_partitions)}) at event {stopped_at}, resumed at {resumed_at}; "
            f"events it processed under its old generation after freezing: {len(stale)}"
        )
        assert not stale, stale[:5]
        log = frozen.log()
        assert "lease" in log or "generation" in log
        for w in workers:
            rc = w.stop()
            assert rc == 0, w.log()[-6000:]
    finally:
        feeder.stop()
        for w in workers:
            if w.process is not None and w.process.poll() is None:
                w.signal(signal.SIGCONT)
            w.cleanup()
        client.close()
