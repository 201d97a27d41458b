"""The Faust workers end to end: samples in, live events and stored rows out.

Real worker processes (``livecoach worker --app live|store``) on the test's Redis and
PostgreSQL; samples are appended to ``samples`` exactly as the edge does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC
from pipeline.embedded import free_port
from pipeline.records import ControlRecord, SampleBatchRecord, session_key
from pipeline.transport import streams
from tests.ids import uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
SESSIONS = 5
SAMPLES_PER_SESSION = 120
BATCH = 10
#: The athlete of every session here.
USER = uid(1)
T0 = 1_767_261_600.0


class Workers:
    def __init__(self, redis_url: str, database_url: str) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")},
            "LIVECOACH_REDIS_URL": redis_url,
            "LIVECOACH_DATABASE_URL": database_url,
            "LIVECOACH_SAMPLES_PARTITIONS": str(PARTITIONS),
            "LIVECOACH_LIVE_PARTITIONS": str(PARTITIONS),
            "LIVECOACH_LOG_LEVEL": "WARNING",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        #: A restarted worker listens where its predecessor did, as a deployed one does.
        self.ports: dict[str, int] = {}

    def start(self, app: str) -> None:
        port = self.ports.setdefault(app, free_port())
        # Each app reads its own variable (the store's web server serves its /metrics).
        env = {
            **self.env,
            "LIVECOACH_WORKER_WEB_PORT": str(port),
            "LIVECOACH_STORE_WEB_PORT": str(port),
        }
        self.procs[app] = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", "--app", app],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self, app: str) -> None:
        proc = self.procs.pop(app)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@pytest.fixture
def workers(redis_url: str, database_url: str) -> Iterator[Workers]:
    w = Workers(redis_url, database_url)
    yield w
    w.stop_all()


def _make_sessions(database_url: str) -> list[str]:
    """The sessions' ids as the samples topic carries them (UUID text)."""
    with psycopg.connect(database_url) as conn:
        user = conn.execute(
            "INSERT INTO users (id, name) VALUES (%s, 'athlete') RETURNING id", (USER,)
        ).fetchone()
        assert user is not None
        ids = []
        for _ in range(SESSIONS):
            row = conn.execute(
                "INSERT INTO live_training_sessions (user_id, started_at, last_update_at)"
                " VALUES (%s, '2026-01-01 10:00:00', '2026-01-01 10:00:00') RETURNING id",
                user,
            ).fetchone()
            assert row is not None
            ids.append(str(row[0]))
        return ids


async def _append(client: aioredis.Redis, session_id: str, record: Any) -> None:
    key = session_key(session_id)
    partition = streams.partition_for_key(key, PARTITIONS)
    now_ms = int(time.time() * 1000)
    await streams.append(
        client, SAMPLES_TOPIC, partition, [(key, record.model_dump_json().encode(), None, now_ms)]
    )


async def _start(client: aioredis.Redis, sessions: list[str]) -> None:
    """A start record for each session, as the edge appends on ``sessions/start``."""
    for sid in sessions:
        record = ControlRecord(
            session_id=sid, user_id=USER, ingest_ms=0, action="start", at_ms=int(T0 * 1000)
        )
        await _append(client, sid, record)


async def _produce(client: aioredis.Redis, sessions: list[str], first: int, last: int) -> None:
    for start in range(first, last, BATCH):
        for sid in sessions:
            samples = [
                {"session_id": sid, "t": T0 + i, "heart_rate": 130.0 + i % 20,
                 "power_w": 180.0 + i % 50, "cadence": 90.0}
                for i in range(start, min(start + BATCH, last))
            ]  # fmt: skip
            record = SampleBatchRecord(
                session_id=sid, user_id=USER, ingest_ms=int(time.time() * 1000), samples=samples
            )
            await _append(client, sid, record)


async def _live_events(client: aioredis.Redis) -> list[dict[str, Any]]:
    events = []
    for partition in range(PARTITIONS):
        for _, (_, value, _, _) in await streams.read(
            client, LIVE_TOPIC, partition, 0, count=100_000
        ):
            events.append(json.loads(value))
    return events


def _stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM live_metrics").fetchone()
        assert row is not None
        return int(row[0])


async def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def test_samples_become_ordered_live_events_and_one_row_each_despite_kill_9(
    workers: Workers, redis_url: str, database_url: str
) -> None:
    sessions = _make_sessions(database_url)
    client = aioredis.Redis.from_url(redis_url)
    expected_rows = SESSIONS * SAMPLES_PER_SESSION * 3  # heart_rate, power, cadence
    try:
        await _start(client, sessions)
        workers.start("live")
        workers.start("store")
        await _produce(client, sessions, 0, SAMPLES_PER_SESSION // 2)
        await _wait_for(lambda: _stored(database_url) > expected_rows // 4, 60, "some rows stored")

        # Crash both workers mid-stream, keep producing, restart.
        workers.kill("live")
        workers.kill("store")
        await _produce(client, sessions, SAMPLES_PER_SESSION // 2, SAMPLES_PER_SESSION)
        workers.start("live")
        workers.start("store")
        await _wait_for(lambda: _stored(database_url) >= expected_rows, 90, "every row stored")
        await asyncio.sleep(1.5)  # a replay would show up as extra rows now
        assert _stored(database_url) == expected_rows

        with psycopg.connect(database_url) as conn:
            dupes = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM live_metrics GROUP BY live_session_id,"
                " metric_type, timestamp HAVING count(*) > 1) d"
            ).fetchone()
            assert dupes == (0,)

        async def all_updates() -> dict[int, list[float]]:
            per_session: dict[int, list[float]] = defaultdict(list)
            for event in await _live_events(client):
                if event["type"] == "metrics_update":
                    per_session[event["session_id"]].append(event["timestamp"])
            return per_session

        deadline = time.monotonic() + 60
        while True:
            updates = await all_updates()
            done = all(
                updates.get(sid) and max(updates[sid]) == T0 + SAMPLES_PER_SESSION - 1
                for sid in sessions
            )
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        for sid in sessions:
            times = updates[sid]
            # At-least-once: a replay after the crash may repeat events; first
            # occurrences must still be in order and cover every second.
            first_seen = list(dict.fromkeys(times))
            assert first_seen == sorted(first_seen), f"session {sid} out of order"
            # One update per record: the state after each batch's last sample.
            assert first_seen == [T0 + i + BATCH - 1 for i in range(0, SAMPLES_PER_SESSION, BATCH)]
            print(f"session {sid}: {len(times) - len(first_seen)} replayed metrics_update")
    finally:
        await client.aclose()


async def _stop(client: aioredis.Redis, sessions: list[str]) -> None:
    for sid in sessions:
        at_ms = int((T0 + SAMPLES_PER_SESSION) * 1000)
        record = ControlRecord(
            session_id=sid, user_id=USER, ingest_ms=0, action="stop", at_ms=at_ms
        )
        await _append(client, sid, record)


async def test_saved_state_holds_every_sample_across_a_stop_and_a_kill_9(
    workers: Workers, redis_url: str, database_url: str
) -> None:
    """The write-behind state (agents/write_behind.py) across restarts: a live worker
    stopped gracefully, then one killed with ``kill -9``, each mid-stream. The summary at
    stop counts every sample once: a commit past an unsaved state would lose samples
    from it, a replay over a saved state would count them twice."""
    sessions = _make_sessions(database_url)
    client = aioredis.Redis.from_url(redis_url)
    thirds = [0, SAMPLES_PER_SESSION // 3, 2 * SAMPLES_PER_SESSION // 3, SAMPLES_PER_SESSION]

    async def updated_to(last: int) -> bool:
        latest: dict[int, float] = {}
        for event in await _live_events(client):
            if event["type"] == "metrics_update":
                latest[event["session_id"]] = max(latest.get(event["session_id"], 0.0),
                                                  event["timestamp"])  # fmt: skip
        return all(latest.get(sid) == T0 + last - 1 for sid in sessions)

    async def wait_updated(last: int) -> None:
        deadline = time.monotonic() + 60
        while not await updated_to(last):
            assert time.monotonic() < deadline, f"no metrics_update up to sample {last}"
            await asyncio.sleep(0.25)

    try:
        await _start(client, sessions)
        workers.start("live")
        await _produce(client, sessions, thirds[0], thirds[1])
        await wait_updated(thirds[1])
        workers.stop_all()  # SIGTERM: a graceful stop
        workers.start("live")
        await _produce(client, sessions, thirds[1], thirds[2])
        await wait_updated(thirds[2])
        workers.kill("live")
        workers.start("live")
        await _produce(client, sessions, thirds[2], thirds[3])
        await _stop(client, sessions)
        deadline = time.monotonic() + 60
        while True:
            stops = {
                e["session_id"]: e["summary"]
                for e in await _live_events(client)
                if e["type"] == "session_event" and e["event"] == "stop"
            }
            if len(stops) == len(sessions) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        expected_hr = sum(130.0 + i % 20 for i in range(SAMPLES_PER_SESSION)) / SAMPLES_PER_SESSION
        for sid in sessions:
            assert stops[sid]["samples"] == SAMPLES_PER_SESSION, stops[sid]
            assert abs(stops[sid]["mean_hr"] - expected_hr) < 1e-9
            # The worker's own replays after the kill are not bad input from the device.
            assert not any(stops[sid]["ignored"].values()), stops[sid]["ignored"]
    finally:
        await client.aclose()


LONG_SAMPLES = 900  # 15 minutes at 1 Hz: every table operation, deletes included
RESUME_BOUND_S = 10.0


def _long_records(sid: str, first: int, last: int) -> list[SampleBatchRecord]:
    records = []
    for start in range(first, last, BATCH):
        samples = [
            {"session_id": sid, "t": T0 + i, "heart_rate": 120.0 + (i * 7) % 45,
             "power_w": 150.0 + (i * 13) % 160, "cadence": 88.0, "speed_m_s": 8.0 + i % 5}
            for i in range(start, min(start + BATCH, last))
        ]  # fmt: skip
        records.append(
            SampleBatchRecord(session_id=sid, user_id=USER, ingest_ms=0, samples=samples)
        )
    return records


def _stop_record(sid: str) -> ControlRecord:
    at_ms = int((T0 + LONG_SAMPLES) * 1000)
    return ControlRecord(session_id=sid, user_id=USER, ingest_ms=0, action="stop", at_ms=at_ms)


def _uninterrupted_summary(sid: str) -> dict[str, Any]:
    """The stop summary of the same records run through the agent's logic in one go."""
    from agents.processing import Processor

    processor = Processor()
    start = ControlRecord(session_id=sid, user_id=USER, ingest_ms=0, action="start",
                          at_ms=int(T0 * 1000))  # fmt: skip
    state = None
    for record in [start, *_long_records(sid, 0, LONG_SAMPLES), _stop_record(sid)]:
        out = processor.process(state, json.loads(record.model_dump_json()))
        state = out.state
    (stop,) = [e for e in out.events if e.get("event") == "stop"]
    return dict(stop["summary"])


async def test_live_worker_restarts_mid_long_sessions_lose_nothing(
    workers: Workers, redis_url: str, database_url: str
) -> None:
    """A clean restart and a kill -9 of the live worker in sessions past 10 minutes:
    metrics flow again within 10 s of the restart, and every session's summary equals
    an uninterrupted run's."""
    sessions = _make_sessions(database_url)
    client = aioredis.Redis.from_url(redis_url)
    cuts = [0, 400, 700, LONG_SAMPLES]

    async def latest_update(sid: str) -> float:
        times = [e["timestamp"] for e in await _live_events(client)
                 if e["type"] == "metrics_update" and e["session_id"] == sid]  # fmt: skip
        return max(times, default=0.0)

    async def produce(first: int, last: int) -> None:
        for sid in sessions:
            for record in _long_records(sid, first, last):
                await _append(client, sid, record)

    async def flowing_again_s(restarted_at: float, upto: int) -> float:
        # The samples written meanwhile must come out as metrics within the bound.
        while True:
            if all([await latest_update(sid) == T0 + upto - 1 for sid in sessions]):
                return time.monotonic() - restarted_at
            assert time.monotonic() - restarted_at < 60, "no metrics after the restart"
            await asyncio.sleep(0.1)

    try:
        await _start(client, sessions)
        workers.start("live")
        await produce(cuts[0], cuts[1])
        deadline = time.monotonic() + 90
        while not all([await latest_update(s) == T0 + cuts[1] - 1 for s in sessions]):
            assert time.monotonic() < deadline, "the first part was not processed"
            await asyncio.sleep(0.25)
        workers.stop_all()  # SIGTERM: a deploy
        await produce(cuts[1], cuts[2])
        restarted = time.monotonic()
        workers.start("live")
        clean_s = await flowing_again_s(restarted, cuts[2])
        workers.kill("live")
        await produce(cuts[2], cuts[3])
        restarted = time.monotonic()
        workers.start("live")
        killed_s = await flowing_again_s(restarted, cuts[3])
        for sid in sessions:
            await _append(client, sid, _stop_record(sid))
        deadline = time.monotonic() + 60
        while True:
            stops = {e["session_id"]: e["summary"] for e in await _live_events(client)
                     if e["type"] == "session_event" and e["event"] == "stop"}  # fmt: skip
            if len(stops) == len(sessions):
                break
            assert time.monotonic() < deadline, f"stop summaries: {sorted(stops)}"
            await asyncio.sleep(0.25)
        print(
            f"\nmetrics again {clean_s:.1f} s after a clean restart, {killed_s:.1f} s after kill -9"
        )
        for sid in sessions:
            assert stops[sid] == _uninterrupted_summary(sid), sid
        assert clean_s < RESUME_BOUND_S and killed_s < RESUME_BOUND_S
    finally:
        await client.aclose()


async def test_a_quiet_long_session_s_blocks_go_while_no_event_runs(
    workers: Workers, redis_url: str, database_url: str
) -> None:
    """A session's retired decoupling blocks are deleted when its state is written,
    which for a quiet session happens as a commit starts, outside any event. Faust takes
    a table key's partition from the current event: the live worker crashed there
    ("Cannot modify table key from outside of stream iteration") and stopped processing."""
    sid = _make_sessions(database_url)[0]
    client = aioredis.Redis.from_url(redis_url)

    async def processed_up_to(last: int, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while True:
            times = [e["timestamp"] for e in await _live_events(client)
                     if e["type"] == "metrics_update" and e["session_id"] == sid]  # fmt: skip
            if max(times, default=0.0) == T0 + last - 1:
                return
            assert time.monotonic() < deadline, f"samples up to {last} not processed"
            await asyncio.sleep(0.25)

    try:
        await _start(client, [sid])
        workers.start("live")
        for record in _long_records(sid, 0, 400):  # past the blocks of the first minutes
            await _append(client, sid, record)
        await processed_up_to(400, 90)
        # Quiet: the next commits write its state and do its held deletes.
        await asyncio.sleep(8)
        assert workers.procs["live"].poll() is None, "the live worker died"
        for record in _long_records(sid, 400, 420):
            await _append(client, sid, record)
        await processed_up_to(420, 20)
    finally:
        await client.aclose()
