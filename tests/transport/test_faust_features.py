"""Faust's documented features on ``redis://``, with real Redis 6.2 and 7.

One worker (started with ``faust -A faust_app worker``, the command line) runs agents to
topics, an agent answering ``ask``, a Table, tumbling and hopping windowed tables and
a GlobalTable; then a second worker process recovers the tables from their changelogs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator

import faust
import psutil
import pytest
import redis
from transport_workers import Worker, produce, read_topic, wait_for

from pipeline.transport import streams
from pipeline.transport.driver import Transport

pytestmark = pytest.mark.integration

P = 4


def test_entry_point_registration() -> None:
    # Without the entry point, Faust resolves "redis" to the redis-py module.
    assert faust.transport.by_url("redis://127.0.0.1:1/0") is Transport
    assert faust.transport.by_url("rediss://127.0.0.1:1/0") is Transport


@pytest.fixture
def client(versioned_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(versioned_url)
    yield c
    c.close()


def _windows(client: redis.Redis, table: str) -> dict[str, int]:
    """Sum of the final value of every window, per key, from a windowed changelog."""
    last: dict[tuple[str, tuple[float, float]], int] = {}
    for rec in read_topic(client, f"lc-test-{table}-changelog", P):
        key, window = json.loads(rec["key"])
        last[(key, tuple(window))] = rec["value"]
    sums: dict[str, int] = defaultdict(int)
    for (key, _), value in last.items():
        sums[key] += value
    return sums


def test_features_and_recovery(versioned_url: str, client: redis.Redis) -> None:
    worker = Worker(versioned_url, LC_ASK="1").start()
    try:
        keys = [b"a", b"b", b"c"]
        produce(client, "events", P, [(k, {"n": i, "ts": 1.0}) for i in range(10) for k in keys])
        produce(client, "settings", P, [(b"coach", "alice")])
        counted = wait_for(
            lambda: (r := read_topic(client, "counted", P)) and len(r) >= 30 and r,
            60,
            "30 counted events",
            [worker],
        )
        final = {}
        for rec in counted:
            final[rec["value"]["key"]] = max(
                final.get(rec["value"]["key"], 0), rec["value"]["count"]
            )
        assert final == {"a": 10, "b": 10, "c": 10}
        # ask(): the start-up task asked double(21) and wrote the answer.
        answers = wait_for(lambda: read_topic(client, "answers", 1), 30, "the answer", [worker])
        assert answers[0]["value"] == {"answer": 42}
        # Faust's web server listens on loopback only (Faust's default is every interface).
        listening = [
            c.laddr
            for c in psutil.Process(worker.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening

        # GlobalTable: look up until the setting has been applied.
        def looked_up() -> bool:
            produce(client, "lookups", P, [(b"x", "coach")])
            return any(r["value"]["setting"] == "alice" for r in read_topic(client, "looked-up", 1))

        wait_for(looked_up, 30, "the global table lookup", [worker])
        # Windowed tables: every event is in one tumbling window and two hopping ones.
        wait_for(lambda: _windows(client, "tumbling") == {"a": 10, "b": 10, "c": 10}, 10,
                 "tumbling windows", [worker])  # fmt: skip
        wait_for(lambda: _windows(client, "hopping") == {"a": 20, "b": 20, "c": 20}, 10,
                 "hopping windows", [worker])  # fmt: skip
        assert worker.stop() == 0
        assert "Traceback" not in worker.log(), worker.log()[-3000:]

        # A new worker recovers the tables from their changelogs.
        worker = Worker(versioned_url).start()
        produce(client, "events", P, [(k, {"n": 10}) for k in keys])

        def after_restart() -> list[dict[str, object]]:
            return [r for r in read_topic(client, "counted", P) if r["value"]["n"] == 10]

        wait_for(lambda: len(after_restart()) >= 3, 60, "events after the restart", [worker])
        recovered = after_restart()
        assert {r["value"]["key"]: r["value"]["count"] for r in recovered} == {
            "a": 11,
            "b": 11,
            "c": 11,
        }
        before = len(read_topic(client, "looked-up", 1))
        produce(client, "lookups", P, [(b"y", "coach")])
        wait_for(lambda: len(read_topic(client, "looked-up", 1)) > before, 30, "lookup", [worker])
        assert read_topic(client, "looked-up", 1)[-1]["value"]["setting"] == "alice"
        # Committed offsets are mirrored into a Redis consumer group for XINFO GROUPS.
        groups = client.xinfo_groups(streams.stream_key("events", 0))
        assert [g["name"] for g in groups] == [b"lc-test"]
        assert worker.stop() == 0
        assert "Traceback" not in worker.log(), worker.log()[-3000:]
    finally:
        worker.cleanup()
