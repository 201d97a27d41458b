"""PostgreSQL goes away mid-stream: the live path keeps going, nothing is lost."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator

import psycopg
import pytest
import redis.asyncio as aioredis

from pipeline.embedded import EmbeddedPostgres
from pipeline.migrations import migrate
from tests.conftest import make_data_dir
from tests.test_agents_e2e import (
    T0,
    Workers,
    _live_events,
    _make_sessions,
    _produce,
    _start,
    _stored,
    _wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedPostgres]:
    data_dir = make_data_dir()
    server = EmbeddedPostgres(data_dir, durable=False)
    migrate(server.start())
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


async def test_samples_wait_in_the_stream_while_postgres_is_down(
    redis_url: str, private_postgres: EmbeddedPostgres
) -> None:
    database_url = private_postgres.url
    sessions = _make_sessions(database_url)
    client = aioredis.Redis.from_url(redis_url)
    workers = Workers(redis_url, database_url)
    try:
        await _start(client, sessions)
        workers.start("live")
        workers.start("store")
        await _produce(client, sessions, 0, 20)
        await _wait_for(lambda: _stored(database_url) == len(sessions) * 20 * 3, 60, "rows")

        port = private_postgres.port
        private_postgres.stop()
        down_at = time.monotonic()
        await _produce(client, sessions, 20, 60)

        async def updates_up_to(last_t: float) -> bool:
            events = await _live_events(client)
            done = {
                e["session_id"]
                for e in events
                if e["type"] == "metrics_update" and e["timestamp"] >= last_t
            }
            return done >= set(sessions)

        deadline = time.monotonic() + 30
        while not await updates_up_to(T0 + 59):
            assert time.monotonic() < deadline, "the live path stalled while PostgreSQL was down"
            await asyncio.sleep(0.25)
        print(f"live path kept going: all updates {time.monotonic() - down_at:.1f} s after outage")

        await asyncio.sleep(2)  # the store agent is retrying now
        private_postgres.requested_port = port
        private_postgres.start()
        await _wait_for(lambda: _stored(database_url) >= len(sessions) * 60 * 3, 90, "catch-up")
        await asyncio.sleep(1.5)
        assert _stored(database_url) == len(sessions) * 60 * 3
        with psycopg.connect(database_url) as conn:
            per_session = conn.execute(
                "SELECT live_session_id, count(*) FROM live_metrics GROUP BY 1 ORDER BY 1"
            ).fetchall()
        assert sorted((str(sid), n) for sid, n in per_session) == sorted(
            (sid, 60 * 3) for sid in sessions
        )
    finally:
        workers.stop_all()
        await client.aclose()
