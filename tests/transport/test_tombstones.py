"""A Faust table whose keys are set, updated and deleted recovers after restarts.

Faust deletes a table key by writing ``None`` to the changelog. Stored as an empty
value, recovery failed (``Input is a zero-length, empty document``) and a restarted
worker never finished recovering. Here a worker is stopped with SIGTERM and killed
with ``kill -9`` between batches of set / add / delete ops; after each restart its
table must equal the table computed independently from the ops.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import redis
from transport_workers import Worker, produce, read_topic, wait_for

from pipeline.embedded import EmbeddedRedis
from pipeline.transport import streams
from pipeline.transport.keys import group_key, tp_field

pytestmark = [pytest.mark.integration]

P = 4
KEYS = 20
APP_ID = "lc-tomb"
CHANGELOG = f"{APP_ID}-members-changelog"


class Model:
    """The table the ops must leave behind, computed without Faust."""

    def __init__(self) -> None:
        self.table: dict[str, list[int]] = {}
        self.n = 0

    def ops(self, rng: random.Random, count: int) -> list[tuple[bytes, dict[str, Any]]]:
        out = []
        for _ in range(count):
            key = f"k{rng.randrange(KEYS)}"
            op = rng.choices(["set", "add", "del"], weights=[2, 5, 3])[0]
            if op == "set":
                self.table[key] = [self.n]
            elif op == "add":
                self.table[key] = sorted({*self.table.get(key, []), self.n})
            else:
                self.table.pop(key, None)
            out.append((key.encode(), {"op": op, "n": self.n}))
            self.n += 1
        return out


def _all_committed(client: redis.Redis) -> bool:
    committed = client.hgetall(group_key(APP_ID, "offsets"))
    return all(
        int(committed.get(tp_field("ops", p).encode(), -1))
        == client.xlen(streams.stream_key("ops", p))
        for p in range(P)
    )


def _changelog_written(client: redis.Redis) -> int:
    """Entries ever appended to the table's changelog (compaction does not lower it)."""
    written = 0
    for p in range(P):
        key = streams.stream_key(CHANGELOG, p)
        if client.exists(key):
            written += streams.offset_of(client.xinfo_stream(key)["last-generated-id"]) + 1
    return written


def _ready(worker: Worker, times: int) -> None:
    def check() -> bool:
        log = worker.log()
        if "Error in recovery" in log:
            raise AssertionError(f"recovery failed:\n{log[-3000:]}")
        return log.count("[^Worker]: Ready") >= times

    wait_for(check, 60, f"the worker to be ready ({times})", [worker])


def _table_seen_by_worker(client: redis.Redis, model: Model, worker: Worker) -> dict[str, Any]:
    """Ask the worker for every key's value (``get`` ops) and collect the answers."""
    first = model.n
    produce(
        client, "ops", P, [(f"k{i}".encode(), {"op": "get", "n": first + i}) for i in range(KEYS)]
    )
    model.n += KEYS

    def answers() -> dict[str, Any] | None:
        got = {r["value"]["key"]: r["value"]["value"] for r in read_topic(client, "got", 1)
               if r["value"]["n"] >= first}  # fmt: skip
        return got if len(got) == KEYS else None

    result: dict[str, Any] = wait_for(answers, 30, f"{KEYS} answers", [worker])
    return result


@pytest.mark.timeout(240)
def test_table_with_deletes_recovers_after_restarts(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    rng = random.Random(12)
    model = Model()
    worker = Worker(server.url, app_id=APP_ID, LC_COMMIT_INTERVAL="0.5")
    try:
        produce(client, "ops", P, model.ops(rng, 1000))
        worker.start(script="tombstone_app")
        _ready(worker, 1)
        wait_for(lambda: _all_committed(client), 60, "the first batch committed", [worker])
        tombstones = [r for r in read_topic(client, CHANGELOG, P) if r["value"] is None]
        assert tombstones, "the changelog holds no tombstone"
        assert worker.stop() == 0

        worker.start(script="tombstone_app")  # a clean restart (SIGTERM before)
        _ready(worker, 2)
        expected = {f"k{i}": model.table.get(f"k{i}") for i in range(KEYS)}
        assert _table_seen_by_worker(client, model, worker) == expected

        for kill in range(3):  # kill -9 while a batch is being processed
            written = _changelog_written(client)
            produce(client, "ops", P, model.ops(rng, 500))
            wait_for(lambda w=written: _changelog_written(client) > w, 30,
                     "the batch to be processed", [worker])  # fmt: skip
            worker.kill()
            worker.start(script="tombstone_app")
            _ready(worker, 3 + kill)
        expected = {f"k{i}": model.table.get(f"k{i}") for i in range(KEYS)}
        assert _table_seen_by_worker(client, model, worker) == expected
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()


@pytest.mark.timeout(120)
def test_deletes_written_as_empty_values_recover(
    private_server_factory: Callable[..., EmbeddedRedis],
) -> None:
    """Changelogs written before tombstones existed hold deletes as empty values."""
    server = private_server_factory()
    client = redis.Redis.from_url(server.url)
    worker = Worker(server.url, app_id=APP_ID)
    try:
        now_ms = 1_700_000_000_000
        offsets = [0] * P

        def write(key: bytes, value: bytes) -> None:
            p = streams.partition_for_key(key, P)
            fields = {"v": value, "t": now_ms, "k": key}
            client.xadd(streams.stream_key(CHANGELOG, p), fields, id=streams.stream_id(offsets[p]))
            offsets[p] += 1

        for i in range(KEYS):
            key = f'"k{i}"'.encode()  # Faust's JSON key serializer
            write(key, f"[{i}]".encode())
            if i % 2:
                write(key, b"")  # how bb43412 wrote a delete
        worker.start(script="tombstone_app")
        _ready(worker, 1)
        model = Model()
        expected = {f"k{i}": None if i % 2 else [i] for i in range(KEYS)}
        assert _table_seen_by_worker(client, model, worker) == expected
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()
