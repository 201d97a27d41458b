"""What the store app writes for a group member's session (pipeline/db.py): its stop ends
the membership (``left_at``) as a leave does. Real PostgreSQL; through the real workers
and the edge in tests/web/test_group_class_path.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from pipeline.db import finish_session

pytestmark = pytest.mark.integration

STARTED = datetime(2026, 1, 1, 10, tzinfo=UTC)
STOPPED = datetime(2026, 1, 1, 11, tzinfo=UTC)


async def _one(conn: psycopg.AsyncConnection[Any], sql: str, *params: Any) -> Any:
    row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return row[0]


async def _member(conn: psycopg.AsyncConnection[Any], *, left: datetime | None = None) -> str:
    """A coach's group and an athlete's running session in it; the session id."""
    coach = await _one(conn, "INSERT INTO users (name) VALUES ('c') RETURNING id")
    athlete = await _one(conn, "INSERT INTO users (name) VALUES ('a') RETURNING id")
    group = await _one(
        conn,
        "INSERT INTO live_groups (coach_id, name, sport, kind, starts_at)"
        " VALUES (%s, 'g', 'ride', 'class', %s) RETURNING id",
        coach,
        STARTED,
    )
    session = await _one(
        conn,
        "INSERT INTO live_training_sessions (user_id, started_at, last_update_at)"
        " VALUES (%s, %s, %s) RETURNING id",
        athlete,
        STARTED,
        STARTED,
    )
    await conn.execute(
        "INSERT INTO live_group_members (group_id, athlete_id, session_id, joined_at, left_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (group, athlete, session, STARTED, left),
    )
    await conn.commit()
    return str(session)


async def _left_at(conn: psycopg.AsyncConnection[Any], session: str) -> Any:
    row = await (
        await conn.execute(
            "SELECT left_at FROM live_group_members WHERE session_id = %s", (session,)
        )
    ).fetchone()
    assert row is not None
    return row[0]


async def _stop(conn: psycopg.AsyncConnection[Any], session: str, ended: datetime) -> None:
    await finish_session(conn, session, sport="ride", started_at=STARTED, ended_at=ended,
                         summary={"duration_s": 3600.0})  # fmt: skip


async def test_a_stop_sets_left_at_to_its_time_once(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        session = await _member(conn)
        assert await _left_at(conn, session) is None
        await _stop(conn, session, STOPPED)
        assert await _left_at(conn, session) == STOPPED
        await _stop(conn, session, datetime(2026, 1, 1, 12, tzinfo=UTC))  # a repeat
        assert await _left_at(conn, session) == STOPPED


async def test_a_stop_keeps_an_earlier_leave_and_never_precedes_the_join(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        left = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
        session = await _member(conn, left=left)
        await _stop(conn, session, STOPPED)
        assert await _left_at(conn, session) == left
        # A device clock behind the edge's: the stop's time before the join.
        session = await _member(conn)
        await _stop(conn, session, datetime(2026, 1, 1, 9, tzinfo=UTC))
        assert await _left_at(conn, session) == STARTED
