"""Hot-path PostgreSQL writes are idempotent (real PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import psycopg.types.json
import pytest

from pipeline.db import finish_session, insert_metric_rows, metric_rows, utc_time

pytestmark = pytest.mark.integration


async def _session(conn: psycopg.AsyncConnection[object], sport: str | None = None) -> str:
    user = await (
        await conn.execute("INSERT INTO users (name) VALUES ('a') RETURNING id")
    ).fetchone()
    assert user is not None
    row = await (
        await conn.execute(
            "INSERT INTO live_training_sessions (user_id, started_at, last_update_at, metadata)"
            " VALUES (%s, '2026-01-01 10:00:00Z', '2026-01-01 10:00:00Z', %s) RETURNING id",
            (user[0], psycopg.types.json.Jsonb({"sport": sport} if sport else {})),
        )
    ).fetchone()
    assert row is not None
    await conn.commit()
    return str(row[0])  # as the samples topic carries it


async def test_replayed_batch_makes_no_second_row(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        sid = await _session(conn)
        t0 = 1_767_261_600.0
        rows = [
            r
            for i in range(10)
            for r in metric_rows(
                sid, t0 + i, {"heart_rate": 140 + i, "power_w": 200.0, "cadence": None}
            )
        ]
        assert len(rows) == 20
        assert await insert_metric_rows(conn, rows) == 20
        assert await insert_metric_rows(conn, rows) == 0
        assert await insert_metric_rows(conn, rows[:5] + rows[-3:]) == 0
        count = await (await conn.execute("SELECT count(*) FROM live_metrics")).fetchone()
        assert count == (20,)
        last = await (
            await conn.execute(
                "SELECT last_update_at FROM live_training_sessions WHERE id = %s", (sid,)
            )
        ).fetchone()
        assert last == (utc_time(t0 + 9),)
        assert last[0] == datetime(2026, 1, 1, 10, 0, 9, tzinfo=UTC)


async def test_rows_of_unknown_sessions_are_skipped_not_fatal(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        sid = await _session(conn)
        rows = metric_rows(sid, 1_767_261_600.0, {"heart_rate": 150}) + metric_rows(
            str(uuid.uuid4()), 1_767_261_600.0, {"heart_rate": 150}
        )
        assert await insert_metric_rows(conn, rows) == 1


async def test_a_replayed_stop_stores_one_summary(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        sid = await _session(conn)
        kwargs = {
            "sport": "ride",
            "started_at": datetime(2026, 1, 1, 10),
            "ended_at": datetime(2026, 1, 1, 11),
            "summary": {"duration_s": 3600.0},
        }
        first = await finish_session(conn, sid, **kwargs)  # type: ignore[arg-type]
        second = await finish_session(conn, sid, **kwargs)  # type: ignore[arg-type]
        assert first is not None and first == second
        rows = await (await conn.execute("SELECT count(*) FROM training_sessions")).fetchone()
        assert rows == (1,)
        status = await (
            await conn.execute(
                "SELECT status, training_session_id FROM live_training_sessions WHERE id = %s",
                (sid,),
            )
        ).fetchone()
        assert status == ("completed", first)
        assert await finish_session(conn, uuid.uuid4(), **kwargs) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("metadata_sport", "given", "stored"), [
    ("run", None, "run"), ("run", "ride", "run"), (None, "swim", "swim"), (None, None, "ride"),
])  # fmt: skip
async def test_the_summary_takes_the_sessions_sport(
    database_url: str, metadata_sport: str | None, given: str | None, stored: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        sid = await _session(conn, metadata_sport)
        training = await finish_session(
            conn, sid, sport=given, started_at=datetime(2026, 1, 1, 10, tzinfo=UTC),
            ended_at=datetime(2026, 1, 1, 11, tzinfo=UTC), summary={},
        )  # fmt: skip
        row = await (
            await conn.execute("SELECT sport FROM training_sessions WHERE id = %s", (training,))
        ).fetchone()
        assert row == (stored,)
