"""The store agent fed records it cannot store, straight on the stream (as a bug or an
old edge could write them): it skips and counts them, and stores everything else
(issue 15 item 15, defence in depth). Real worker processes, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC, STORE_REJECTED_KEY, STORE_TOPIC
from pipeline.records import ControlRecord, SampleBatchRecord
from pipeline.transport import streams
from tests.test_agents_e2e import (
    PARTITIONS,
    T0,
    USER,
    Workers,
    _append,
    _make_sessions,
    _start,
    _wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def workers(redis_url: str, database_url: str) -> Iterator[Workers]:
    w = Workers(redis_url, database_url)
    yield w
    w.stop_all()


def _batch(sid: str, times: list[float]) -> SampleBatchRecord:
    samples = [{"session_id": sid, "t": t, "heart_rate": 140.0, "power_w": 200.0} for t in times]
    return SampleBatchRecord(session_id=sid, user_id=USER, ingest_ms=0, samples=samples)


def _stop(sid: str, at_ms: int) -> ControlRecord:
    return ControlRecord(session_id=sid, user_id=USER, ingest_ms=0, action="stop", at_ms=at_ms)


def _query(database_url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, args).fetchall()


async def _where(client: aioredis.Redis, workers: Workers) -> str:
    """Each topic's partition lengths and each worker's exit code (None: running)."""
    lengths = {
        topic: [await streams.highwater(client, topic, p) for p in range(PARTITIONS)]
        for topic in (SAMPLES_TOPIC, LIVE_TOPIC, STORE_TOPIC)
    }
    exits = {app: proc.poll() for app, proc in workers.procs.items()}
    return f"stream highwaters {lengths}, worker exit codes {exits}"


async def test_unstorable_records_are_skipped_and_counted_not_fatal(
    workers: Workers, redis_url: str, database_url: str
) -> None:
    bad, good = _make_sessions(database_url)[:2]
    client = aioredis.Redis.from_url(redis_url)
    try:
        await _start(client, [bad, good])
        # A batch with a sample in the year 3,170,000 (and a good one), a batch of good
        # samples after it, then a stop at_ms 1e17: the summary's end is not a datetime.
        await _append(client, bad, _batch(bad, [T0 + 1, 1e17]))
        await _append(client, bad, _batch(bad, [T0 + 2, T0 + 3]))
        await _append(client, bad, _stop(bad, 10**17))
        await _append(client, good, _batch(good, [T0 + 1, T0 + 2]))
        await _append(client, good, _stop(good, int((T0 + 3) * 1000)))
        workers.start("live")
        workers.start("store")

        def good_summary_stored() -> bool:
            rows = _query(database_url, "SELECT training_session_id FROM live_training_sessions"
                          " WHERE id = %s", good)  # fmt: skip
            return rows[0][0] is not None

        try:
            await _wait_for(good_summary_stored, 90, "the good session's summary")
        except AssertionError as exc:
            # Where the records stopped, for a failure seen only in CI (2026-12-07).
            raise AssertionError(f"{exc}; {await _where(client, workers)}") from None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = await client.hgetall(STORE_REJECTED_KEY)
            if counts.get(b"summary") and counts.get(b"samples"):
                break
            await asyncio.sleep(0.2)
        assert counts == {b"samples": b"1", b"summary": b"1"}, counts
        # The bad session: the batch with the year-3,170,000 sample is skipped whole (two
        # metrics of one good sample with it), the next batch stored; the good one whole.
        # Rows come from `samples` and summaries from `store`, two topics read apart: the
        # summary may be stored first, so the rows are waited for.
        expected = {bad: 4, good: 4}
        deadline = time.monotonic() + 30
        while True:
            stored = dict(_query(database_url, "SELECT live_session_id::text, count(*)"
                                 " FROM live_metrics GROUP BY 1 ORDER BY 1"))  # fmt: skip
            if stored == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert stored == expected, stored
        assert workers.procs["store"].poll() is None, "the store worker died"
        bad_row = _query(database_url, "SELECT training_session_id FROM live_training_sessions"
                         " WHERE id = %s", bad)  # fmt: skip
        assert bad_row == [(None,)]
    finally:
        await client.aclose()
