"""PostgreSQL access for the hot path: sample rows, session bookkeeping, summaries.

Every write here is idempotent, because the agents that call it run at-least-once: a
replayed stream entry must never make a second row or a second summary.

- Samples become one ``live_metrics`` row per metric type and timestamp, written as one
  multi-row ``INSERT ... SELECT FROM unnest(...)`` per batch (one round trip, one plan)
  with ``ON CONFLICT DO NOTHING`` on ``uq_live_metrics_sample``. Rows of sessions that do
  not exist are skipped rather than failing the whole batch on the foreign key.
- A stopped session gets one ``training_sessions`` row, linked from the live session
  under a row lock, so a replayed stop finds the link and does nothing.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

#: Sample fields stored in ``live_metrics``, and the metric_type each is stored under.
METRIC_FIELDS: dict[str, str] = {
    "heart_rate": "heart_rate",
    "power_w": "power",
    "speed_m_s": "speed",
    "cadence": "cadence",
    "distance_m": "distance",
    "altitude_m": "altitude",
}


@dataclass(frozen=True, slots=True)
class MetricRow:
    #: The session's UUID as canonical text, as the samples topic carries it: the hot
    #: path never builds a uuid.UUID per row (PostgreSQL parses the array once).
    session_id: str
    t_s: float  # epoch seconds; stored in the TIMESTAMPTZ column as that instant
    metric_type: str
    value: float


#: Epoch seconds a ``datetime`` (and so a TIMESTAMPTZ written from Python) can hold:
#: years 1 to 9999.
STORABLE_EPOCH_S = (-62_135_596_800.0, 253_402_300_799.0)


def utc_time(epoch_s: float) -> datetime:
    """Epoch seconds as the aware UTC datetime a TIMESTAMPTZ column takes.

    ValueError for a time no ``datetime`` holds (NaN, infinite, past year 9999).
    """
    if not STORABLE_EPOCH_S[0] <= epoch_s <= STORABLE_EPOCH_S[1]:
        raise ValueError(f"time {epoch_s!r} (epoch seconds) is out of the storable range")
    return datetime.fromtimestamp(epoch_s, UTC)


def metric_rows(session_id: str, t_s: float, sample: dict[str, Any]) -> list[MetricRow]:
    """One row per metric present in ``sample`` (a JSON-mode sample dict).

    ValueError for a time or a value that cannot be stored (the edge lets none through;
    the store agent skips such a record instead of failing its whole batch)."""
    if not STORABLE_EPOCH_S[0] <= t_s <= STORABLE_EPOCH_S[1]:
        raise ValueError(f"time {t_s!r} (epoch seconds) is out of the storable range")
    rows = [
        MetricRow(session_id, t_s, metric_type, float(sample[field]))
        for field, metric_type in METRIC_FIELDS.items()
        if sample.get(field) is not None
    ]
    if not all(math.isfinite(row.value) for row in rows):
        raise ValueError(f"a value of the sample at {t_s!r} is not a finite number")
    return rows


# Epoch seconds become TIMESTAMPTZ in the server (to_timestamp); the arrays
# travel as text literals (see _array), which psycopg would otherwise dump element by
# element in Python: the largest cost of the store agent.
_INSERT_METRICS = """
INSERT INTO live_metrics (live_session_id, timestamp, metric_type, value)
SELECT r.sid, to_timestamp(r.t), r.mt, r.v
FROM unnest(%s::uuid[], %s::float8[], %s::text[], %s::float8[]) AS r(sid, t, mt, v)
JOIN live_training_sessions s ON s.id = r.sid
ON CONFLICT ON CONSTRAINT uq_live_metrics_sample DO NOTHING
"""

_TOUCH_SESSIONS = """
UPDATE live_training_sessions AS s
SET last_update_at = GREATEST(s.last_update_at, to_timestamp(u.t))
FROM unnest(%s::uuid[], %s::float8[]) AS u(sid, t)
WHERE s.id = u.sid
"""


def _array(values: Any) -> str:
    """A PostgreSQL array literal of numbers, UUIDs or plain identifiers (no quoting
    needed: none of them holds a comma, a brace, a quote or a space)."""
    return "{" + ",".join(map(str, values)) + "}"


async def insert_metric_rows(conn: psycopg.AsyncConnection[Any], rows: Sequence[MetricRow]) -> int:
    """Insert rows idempotently and keep ``last_update_at`` current; return rows inserted.

    Runs in one transaction: either the whole batch is stored or none of it, so the
    caller can simply retry the batch after an error.
    """
    if not rows:
        return 0
    latest: dict[str, float] = {}
    for row in rows:
        if row.session_id not in latest or row.t_s > latest[row.session_id]:
            latest[row.session_id] = row.t_s
    async with conn.transaction():
        cursor = await conn.execute(
            _INSERT_METRICS,
            (
                _array(r.session_id for r in rows),
                _array(repr(r.t_s) for r in rows),
                _array(r.metric_type for r in rows),
                _array(repr(r.value) for r in rows),
            ),
        )
        inserted = cursor.rowcount
        await conn.execute(_TOUCH_SESSIONS, (_array(latest), _array(map(repr, latest.values()))))
    return inserted


async def finish_session(
    conn: psycopg.AsyncConnection[Any],
    session_id: UUID | str,
    *,
    sport: str | None,
    started_at: datetime,
    ended_at: datetime,
    summary: dict[str, Any],
) -> UUID | None:
    """Store the summary of a stopped session once; return the training_sessions id.
    The session's group membership, if any, ends (``left_at``: ``ended_at``).

    The sport is the live session's (``metadata.sport``), else ``sport``, else
    ``'ride'`` (the column's default). Returns None
    when the live session does not exist.
    """
    async with conn.transaction():
        row = await (
            await conn.execute(
                "SELECT user_id, training_session_id, metadata->>'sport' FROM"
                " live_training_sessions WHERE id = %s FOR UPDATE",
                (session_id,),
            )
        ).fetchone()
        if row is None:
            return None
        # A stop ends the session's group membership, as a leave does (docs/groups.md).
        await conn.execute(
            "UPDATE live_group_members SET left_at = GREATEST(%s, joined_at)"
            " WHERE session_id = %s AND left_at IS NULL AND joined_at IS NOT NULL",
            (ended_at, session_id),
        )
        user_id, existing, session_sport = row
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        inserted = await (
            await conn.execute(
                "INSERT INTO training_sessions "
                "(user_id, sport, started_at, ended_at, duration_s, distance_m, summary) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    user_id,
                    (session_sport or sport or "ride")[:20],
                    started_at,
                    ended_at,
                    summary.get("duration_s"),
                    summary.get("distance_m"),
                    Jsonb(summary),
                ),
            )
        ).fetchone()
        assert inserted is not None
        training_id: UUID = inserted[0]
        await conn.execute(
            "UPDATE live_training_sessions SET training_session_id = %s, status = 'completed' "
            "WHERE id = %s",
            (training_id, session_id),
        )
    return training_id


async def replace_group_standings(
    conn: psycopg.AsyncConnection[Any], group_id: UUID | str, rows: Sequence[dict[str, Any]]
) -> int:
    """Replace a group's stored standings with ``rows`` (its final board's rows), in one
    transaction: a repeat stores the same rows again. Returns the rows written (0 when
    the group does not exist)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM live_group_standings WHERE group_id = %s", (group_id,))
        written = 0
        for row in rows:
            cursor = await conn.execute(
                "INSERT INTO live_group_standings (group_id, athlete_id, rank, standing)"
                " SELECT id, %s, %s, %s FROM live_groups WHERE id = %s",
                (row["athlete_id"], row.get("rank"), Jsonb(row), group_id),
            )
            written += cursor.rowcount
    return written


@dataclass(frozen=True, slots=True)
class IdleSession:
    session_id: UUID
    user_id: UUID
    #: The session's last activity (its latest sample or lifecycle change), epoch seconds.
    last_active_s: float


_CLOSE_IDLE = """
UPDATE live_training_sessions SET status = 'completed'
WHERE status IN ('active', 'paused') AND last_update_at < NOW() - make_interval(secs => %s)
RETURNING id, user_id, extract(epoch FROM last_update_at)::float8
"""


@asynccontextmanager
async def closing_idle_sessions(
    conn: psycopg.AsyncConnection[Any], idle_s: float
) -> AsyncIterator[list[IdleSession]]:
    """Mark the running or paused sessions with no activity for ``idle_s`` completed, in
    a transaction held open while the caller announces their stop; it commits when the
    block ends without an error, else rolls back (and a later sweep finds them again).

    Several store workers may sweep at once: the row locks of the UPDATE make a second
    sweep wait for the first and then skip the rows it closed, so each session is
    closed by one of them.
    """
    async with conn.transaction():
        cursor = await conn.execute(_CLOSE_IDLE, (idle_s,))
        rows = await cursor.fetchall()
        yield [IdleSession(row[0], row[1], float(row[2])) for row in rows]
