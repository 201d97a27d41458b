"""Worker identity and group state with real workers: no web server, restarts, clients.

``faust -A faust_app worker`` processes (see ``transport_workers``). Each test states
the issue-12 defect it reproduces; session timeouts are given per test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis
from transport_workers import (
    FAUST,
    HERE,
    Feeder,
    Worker,
    published_assignment,
    read_topic,
    wait_for,
)

from pipeline.embedded import EmbeddedRedis
from pipeline.transport.keys import group_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

P = 6


def _env(session_timeout_s: float) -> dict[str, str]:
    return {"LC_PARTITIONS": str(P), "LC_SESSION_TIMEOUT": str(session_timeout_s)}


def _split_over(client: redis.Redis, members: int) -> dict[str, list[int]] | None:
    """The published assignment if it splits every partition over ``members`` members."""
    _, assignment = published_assignment(client)
    parts = sorted(p for ps in assignment.values() for p in ps)
    if len(assignment) != members or parts != list(range(P)):
        return None
    return assignment


def _processed(client: redis.Redis) -> Counter[int]:
    """How many times each event ("n") was processed."""
    return Counter(r["value"]["n"] for r in read_topic(client, "counted", P))


def _generation(client: redis.Redis) -> int:
    return int(client.hget(group_key("lc-test", "state"), "generation") or 0)


@pytest.mark.timeout(240)
def test_two_workers_without_web_split_and_take_over(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    """Issue 4: without the web server both workers were "host:6066" and both processed
    everything."""
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    workers = [Worker(server.url, **_env(5.0)).start(web=False) for _ in range(2)]
    feeder = Feeder(server.url, "events", P, rate=200, keys=12, limit=100_000)
    try:
        split = wait_for(lambda: _split_over(client, 2), 60, "a split over two", workers)
        assert sorted(len(ps) for ps in split.values()) == [3, 3], split
        feeder.start()
        wait_for(lambda: feeder.sent >= 600, 30, "600 events sent", workers)
        sent = feeder.sent
        wait_for(lambda: set(_processed(client)) >= set(range(sent)), 30, "them processed",
                 workers)  # fmt: skip
        twice = {n: c for n, c in _processed(client).items() if c > 1}
        assert not twice, f"{len(twice)} events processed twice, e.g. {list(twice)[:5]}"
        victim, survivor = workers
        victim.kill()
        wait_for(lambda: _split_over(client, 1), 30, "the survivor to take over", [survivor])
        feeder.stop()
        total = feeder.sent
        wait_for(lambda: set(_processed(client)) >= set(range(total)), 30, "every event",
                 [survivor])  # fmt: skip
        assert survivor.stop() == 0
    finally:
        feeder.stop()
        for w in workers:
            w.cleanup()
        client.close()


def _first_output_after(client: redis.Redis, n: int) -> bool:
    return any(k >= n for k in _processed(client))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("web", [True, False], ids=["web", "without-web"])
def test_kill_9_and_restart_starts_a_new_generation(
    private_server_factory: Callable[..., EmbeddedRedis], web: bool
) -> None:
    """Issue 12: the restarted process refreshed its predecessor's member entry and ran
    the assignment stored for it, in the same generation. Also measures how long a
    kill -9 and an immediate restart leave the partitions idle (session timeout 10 s)."""
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    # LC_ASK: each process asks once, so it subscribes to a reply topic of its own.
    first = Worker(server.url, LC_ASK="1", **_env(10.0)).start(web=web)
    second = Worker(server.url, LC_ASK="1", **_env(10.0))
    second.web_port = first.web_port  # the same machine slot: a static id with the web on
    feeder = Feeder(server.url, "events", P, rate=50, keys=12, limit=100_000)
    try:
        wait_for(lambda: _split_over(client, 1), 60, "the first worker to run", [first])
        wait_for(lambda: read_topic(client, "answers", 1), 30, "its answer", [first])
        before = _generation(client)
        feeder.start()
        wait_for(lambda: _first_output_after(client, 0), 30, "processing", [first])
        first.kill()
        killed_at = time.monotonic()
        second.start(web=web)
        after = feeder.sent
        wait_for(lambda: _first_output_after(client, after), 60, "processing again", [second])
        idle_s = time.monotonic() - killed_at
        generation, assignment = published_assignment(client)
        print(f"\nkill -9 + restart ({'web' if web else 'without web'}): processing again "
              f"{idle_s:.1f} s after the kill; generation {before} -> {generation}")  # fmt: skip
        assert generation > before
        assert sorted(p for ps in assignment.values() for p in ps) == list(range(P))
        feeder.stop()
        assert second.stop() == 0
        assert "KeyError" not in second.log()
    finally:
        feeder.stop()
        for w in (first, second):
            w.cleanup()
        client.close()


@pytest.mark.timeout(240)
def test_flushall_under_one_worker(private_server_factory: Callable[..., EmbeddedRedis]) -> None:
    """Issue 3: after FLUSHALL one worker stayed "joining" forever (32 self-evictions in
    25 s). Everything appended after the flush must be processed, and once."""
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    worker = Worker(server.url, **_env(5.0)).start()
    feeder = Feeder(server.url, "events", P, rate=200, keys=12, limit=100_000)
    try:
        wait_for(lambda: _split_over(client, 1), 60, "the worker to run", [worker])
        feeder.start()
        wait_for(lambda: len(_processed(client)) >= 1000, 60, "1,000 events processed", [worker])
        client.flushall()  # the whole server: group state, offsets, streams
        flushed_at = feeder.sent
        wait_for(lambda: _split_over(client, 1), 60, "a new group state", [worker])
        wait_for(lambda: feeder.sent >= flushed_at + 600, 30, "600 more events", [worker])
        feeder.stop()
        total = feeder.sent
        # The streams hold what was appended after the flush (Redis lost the rest).
        appended = {
            r["value"]["n"] for r in read_topic(client, "events", P) if r["value"]["n"] < total
        }
        assert appended and min(appended) >= flushed_at - 200  # a tick may straddle
        wait_for(lambda: set(_processed(client)) >= appended, 60,
                 "every event appended after the flush", [worker])  # fmt: skip
        twice = {n: c for n, c in _processed(client).items() if c > 1 and n in appended}
        assert not twice, f"{len(twice)} processed twice, e.g. {sorted(twice)[:5]}"
        assert "group state lost" in worker.log()
        assert worker.stop() == 0
    finally:
        feeder.stop()
        worker.cleanup()
        client.close()


@pytest.mark.timeout(240)
def test_group_state_lost_under_two_workers(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    """Issue 3: two workers kept stale generations. Only the group's keys go here (a
    FLUSHALL also takes the table changelogs, and Faust's recovery then stops a worker
    with a ConsistencyError: helper for lost streams, not group state)."""
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    workers = [Worker(server.url, **_env(5.0)).start() for _ in range(2)]
    feeder = Feeder(server.url, "events", P, rate=200, keys=12, limit=100_000)
    try:
        wait_for(lambda: _split_over(client, 2), 60, "the workers to run", workers)
        feeder.start()
        wait_for(lambda: len(_processed(client)) >= 1000, 60, "1,000 events processed", workers)
        state = group_key("lc-test", "state")
        epoch = client.hget(state, "epoch")
        client.delete(*client.keys(group_key("lc-test", "*")))

        def new_state_runs() -> bool:
            now = client.hmget(state, "epoch", "phase")
            return now[0] not in (None, epoch) and now[1] == b"stable"

        wait_for(lambda: new_state_runs() and _split_over(client, 2), 60, "a new group state",
                 workers)  # fmt: skip
        settled_at = feeder.sent
        wait_for(lambda: feeder.sent >= settled_at + 600, 30, "600 more events", workers)
        feeder.stop()
        total = feeder.sent
        wait_for(lambda: set(_processed(client)) >= set(range(total)), 60, "every event",
                 workers)  # fmt: skip
        counts = _processed(client)
        # The committed offsets went with the group state: the partitions are read again
        # from their earliest entry (consumer_auto_offset_reset), so an event seen before
        # is seen once more; what arrived once the new group state ran, only once.
        assert max(counts.values()) <= 2, counts.most_common(3)
        twice = sorted(n for n, c in counts.items() if c > 1 and n >= settled_at)
        assert not twice, f"{len(twice)} processed twice, e.g. {twice[:5]}"
        for w in workers:
            assert "group state lost" in w.log()
            assert w.stop() == 0
    finally:
        feeder.stop()
        for w in workers:
            w.cleanup()
        client.close()


@pytest.mark.timeout(180)
def test_ask_from_a_command_leaves_the_group_alone(versioned_url: str) -> None:
    """Issue 11: a client-only command joined the workers' group and read nothing."""
    client = redis.Redis.from_url(versioned_url)
    worker = Worker(versioned_url, **_env(5.0)).start()
    try:
        wait_for(lambda: _split_over(client, 1), 60, "the worker to run", [worker])
        generation, assignment = published_assignment(client)
        env = {
            **os.environ,
            "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "LC_BROKER": versioned_url,
            "LC_PARTITIONS": str(P),
            "LC_DATA_DIR": str(worker.dir / "client-data"),
        }
        done = subprocess.run(
            [FAUST, "-A", "faust_app", "ask-once"],
            cwd=worker.dir, env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        assert done.returncode == 0 and "answer: 42" in out, out[-3000:]
        assert published_assignment(client) == (generation, assignment)
        members = client.zrange(group_key("lc-test", "members"), 0, -1)
        assert len(members) == 1, members
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()
