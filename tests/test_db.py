"""Hot-path PostgreSQL writes are idempotent (real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from pipeline.db import finish_session, insert_metric_rows, metric_rows, utc_naive

pytestmark = pytest.mark.integration


async def _session(conn: psycopg.AsyncConnection[object]) -> int:
    user = await (
        await conn.execute("INSERT INTO users (name) VALUES ('a') RETURNING id")
    ).fetchone()
    assert user is not None
    row = await (
        await conn.execute(
            "INSERT INTO live_training_sessions (user_id, started_at, last_update_at) "
            "VALUES (%s, '2026-01-01 10:00:00', '2026-01-01 10:00:00') RETURNING id",
            user,
        )
    ).fetchone()
    assert row is not None
    await conn.commit()
    return int(row[0])  # type: ignore[call-overload]


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
        assert last == (utc_naive(t0 + 9),)


async def test_rows_of_unknown_sessions_are_skipped_not_fatal(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        sid = await _session(conn)
        rows = metric_rows(sid, 1_767_261_600.0, {"heart_rate": 150}) + metric_rows(
            sid + 999, 1_767_261_600.0, {"heart_rate": 150}
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
        assert await finish_session(conn, sid + 999, **kwargs) is None  # type: ignore[arg-type]
