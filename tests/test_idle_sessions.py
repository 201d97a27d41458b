"""Abandoned sessions are closed by the store workers (issue 15 item 22): no activity
for ``LIVECOACH_SESSION_IDLE_S`` -> stopped with reason ``idle``, one ``session_event``
stop on ``live``, the summary written; two store workers close it once. Real worker
processes, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest
import redis.asyncio as aioredis

from pipeline.records import SampleBatchRecord
from tests.test_agents_e2e import (
    T0,
    USER,
    Workers,
    _append,
    _live_events,
    _make_sessions,
    _start,
    _wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IDLE_S = 3.0


@pytest.fixture
def workers(redis_url: str, database_url: str) -> Iterator[list[Workers]]:
    """Two sets of workers on one host: a live worker and two store workers."""
    sets = [Workers(redis_url, database_url) for _ in range(2)]
    for w in sets:
        w.env["LIVECOACH_SESSION_IDLE_S"] = str(IDLE_S)
        w.env["LIVECOACH_SESSION_IDLE_CHECK_S"] = "0.3"
    yield sets
    for w in sets:
        w.stop_all()


def _status(database_url: str, sid: str) -> tuple[str, object]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status, training_session_id FROM live_training_sessions WHERE id = %s", (sid,)
        ).fetchone()
        assert row is not None
        return row[0], row[1]


async def test_an_idle_session_is_stopped_once_with_its_summary(
    workers: list[Workers], redis_url: str, database_url: str
) -> None:
    abandoned, busy = _make_sessions(database_url)[:2]
    with psycopg.connect(database_url) as conn:
        # The abandoned one was last active in January; the busy one is active "until"
        # 20 s from now (as if a sample of then had arrived), then abandoned too.
        conn.execute("UPDATE live_training_sessions SET last_update_at = NOW()"
                     " + interval '20 seconds' WHERE id = %s", (busy,))  # fmt: skip
    client = aioredis.Redis.from_url(redis_url)
    try:
        await _start(client, [abandoned, busy])
        samples = [{"session_id": abandoned, "t": T0 + i, "heart_rate": 140.0} for i in range(5)]
        batch = SampleBatchRecord(session_id=abandoned, user_id=USER, ingest_ms=0, samples=samples)
        await _append(client, abandoned, batch)
        workers[0].start("live")
        workers[0].start("store")
        workers[1].start("store")
        await _wait_for(lambda: _status(database_url, abandoned)[1] is not None, 90, "summary")
        assert _status(database_url, abandoned)[0] == "completed"
        assert _status(database_url, busy) == ("active", None)  # not idle yet

        def stops(events: list[dict[str, object]], sid: str) -> list[dict[str, object]]:
            return [e for e in events if e["type"] == "session_event"
                    and e["session_id"] == sid and e["event"] in ("stop", "rejected")]  # fmt: skip

        deadline = time.monotonic() + 20 + IDLE_S + 30
        while not stops(await _live_events(client), busy):
            assert time.monotonic() < deadline, "the busy session was never closed once idle"
            await asyncio.sleep(0.3)
        events = await _live_events(client)
        (stop,) = stops(events, abandoned)  # once, though two store workers sweep
        assert stop["event"] == "stop" and stop["reason"] == "idle", stop
        assert stop["summary"]["samples"] == 5, stop  # type: ignore[index]
        assert stop["state"] == "stopped", stop
        (busy_stop,) = stops(events, busy)
        assert busy_stop["event"] == "stop" and busy_stop["reason"] == "idle", busy_stop
    finally:
        await client.aclose()
