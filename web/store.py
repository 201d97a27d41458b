"""PostgreSQL access of the edge: sessions, metrics history, alerts, profiles, chat.

Every query the edge runs lives here, over a psycopg 3 ``AsyncConnectionPool``; rows
come back as plain dicts with timestamps in ISO 8601 UTC (``...Z``) so handlers can
serialise them directly. psycopg errors are translated into :class:`StoreError` (a
:class:`~pipeline.errors.ServiceError`) here, once, and counted by the caller.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pipeline import users
from pipeline.errors import DataRejected, ServiceError
from pipeline.users import Role, UserId

Row = dict[str, Any]

SESSION_STATUSES = ("active", "paused", "completed")
#: Allowed lifecycle transitions: action -> (statuses it applies to, resulting status).
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": (("active",), "paused"),
    "resume": (("paused",), "active"),
    "stop": (("active", "paused"), "completed"),
}


class StoreError(ServiceError):
    """PostgreSQL failed a query of the edge (unreachable, failing, timed out)."""

    backend = "postgresql"


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def utc_aware(value: dt.datetime) -> dt.datetime:
    """A time for a TIMESTAMPTZ column: naive means UTC (never the server's zone)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _clean(row: Row | None) -> Row | None:
    if row is None:
        return None
    return {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


def _metrics_where(
    session_id: UUID,
    metric_types: list[str] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of a session's metrics history query."""
    where = ["live_session_id = %s"]
    params: list[Any] = [session_id]
    if metric_types:
        where.append("metric_type = ANY(%s)")
        params.append(metric_types)
    if since is not None:
        where.append("timestamp >= %s")
        params.append(utc_aware(since))
    if until is not None:
        where.append("timestamp < %s")
        params.append(utc_aware(until))
    return " AND ".join(where), params


class Store:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def _cursor(self, **fields: Any) -> AsyncIterator[psycopg.AsyncCursor[Row]]:
        """A pooled connection's cursor; the transaction commits when the block ends.

        PostgreSQL refusing the data a request brought (a constraint, a type, a length:
        SQLSTATE classes 22 and 23, and psycopg's own refusal of a NUL byte) is the
        caller's fault: :class:`DataRejected` carrying ``fields``, the request fields
        the statement writes (name: value), for PostgreSQL's errors that name no column.
        Anything
        else (a lost or failing server, a timeout) is :class:`StoreError` (503).
        """
        try:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                yield cur
        except (psycopg.errors.IntegrityError, psycopg.DataError) as exc:
            raise DataRejected(exc, fields) from exc
        except (psycopg.Error, TimeoutError) as exc:
            raise StoreError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        async with self._cursor() as cur:
            await cur.execute("SELECT 1")

    # --- access -----------------------------------------------------------------------

    async def is_linked(self, coach_id: UUID, athlete_id: UUID) -> bool:
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT 1 FROM coach_athletes WHERE coach_id = %s AND athlete_id = %s",
                (coach_id, athlete_id),
            )
            return await cur.fetchone() is not None

    # --- users and links (SQL in pipeline.users, shared with the CLI) -----------------

    async def get_user(self, user_id: UserId) -> Row | None:
        async with self._cursor() as cur:
            return await users.get_user(cur, user_id)

    async def roles_of(self, user_ids: list[UserId]) -> dict[UserId, Role]:
        async with self._cursor() as cur:
            return await users.roles_of(cur, user_ids)

    async def provision_user(self, user_id: UserId, *, role: Role, name: str) -> Row:
        async with self._cursor(sub=user_id, name=name) as cur:
            return await users.provision_user(cur, user_id, role=role, name=name)

    async def add_user(
        self, user_id: UserId, *, role: Role, name: str, email: str | None
    ) -> tuple[Row, bool]:
        async with self._cursor(id=user_id, role=role, name=name, email=email) as cur:
            return await users.add_user(cur, user_id, role=role, name=name, email=email)

    async def list_users(self, *, role: Role | None, after: UserId | None, limit: int) -> list[Row]:
        async with self._cursor(role=role, after=after, limit=limit) as cur:
            return await users.list_users(cur, role=role, after=after, limit=limit)

    async def link(self, coach_id: UserId, athlete_id: UserId) -> tuple[Row, bool]:
        async with self._cursor(coach_id=coach_id, athlete_id=athlete_id) as cur:
            return await users.link(cur, coach_id, athlete_id)

    async def unlink(self, coach_id: UserId, athlete_id: UserId) -> bool:
        async with self._cursor(coach_id=coach_id, athlete_id=athlete_id) as cur:
            return await users.unlink(cur, coach_id, athlete_id)

    async def list_links(self, *, coach_id: UserId | None, athlete_id: UserId | None) -> list[Row]:
        async with self._cursor(coach=coach_id, athlete=athlete_id) as cur:
            return await users.list_links(cur, coach_id=coach_id, athlete_id=athlete_id)

    async def linked_people(self, user_id: UserId, role: Role) -> list[Row]:
        """A coach's athletes, or an athlete's coaches: ``id``, ``name``, ``role``, by name."""
        mine, theirs = ("coach_id", "athlete_id") if role == "coach" else ("athlete_id", "coach_id")
        async with self._cursor(user=user_id) as cur:
            await cur.execute(
                "SELECT u.id, u.name, u.role FROM coach_athletes l"
                f" JOIN users u ON u.id = l.{theirs} WHERE l.{mine} = %s ORDER BY u.name, u.id",
                (user_id,),
            )
            return [r for r in (_clean(row) for row in await cur.fetchall()) if r is not None]

    # --- sessions ---------------------------------------------------------------------

    async def create_session(
        self,
        *,
        user_id: UUID,
        coach_id: UUID | None,
        training_session_id: UUID | None,
        metadata: dict[str, Any],
    ) -> Row:
        async with self._cursor(
            coach_id=coach_id, training_session_id=training_session_id, metadata=metadata
        ) as cur:
            await cur.execute(
                "INSERT INTO live_training_sessions"
                " (user_id, coach_id, training_session_id, status, metadata)"
                " VALUES (%s, %s, %s, 'active', %s) RETURNING *",
                (user_id, coach_id, training_session_id, Jsonb(metadata)),
            )
            row = _clean(await cur.fetchone())
            assert row is not None
            return row

    async def get_session(self, session_id: UUID) -> Row | None:
        async with self._cursor() as cur:
            await cur.execute("SELECT * FROM live_training_sessions WHERE id = %s", (session_id,))
            return _clean(await cur.fetchone())

    async def open_sessions(self, user_id: UUID) -> list[Row]:
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT * FROM live_training_sessions WHERE user_id = %s"
                " AND status <> 'completed' ORDER BY started_at, id",
                (user_id,),
            )
            return [r for r in map(_clean, await cur.fetchall()) if r is not None]

    async def sessions_of(
        self, user_id: UUID, *, status: str | None, before: dt.datetime | None, limit: int
    ) -> list[Row]:
        """An athlete's sessions, newest first (keyset on ``started_at``)."""
        where: list[str] = ["user_id = %s"]
        params: list[Any] = [user_id]
        if status is not None:
            where.append("status = %s")
            params.append(status)
        if before is not None:
            where.append("started_at < %s")
            params.append(utc_aware(before))
        async with self._cursor() as cur:
            await cur.execute(
                f"SELECT * FROM live_training_sessions WHERE {' AND '.join(where)}"
                " ORDER BY started_at DESC, id LIMIT %s",
                [*params, limit],
            )
            return [r for r in map(_clean, await cur.fetchall()) if r is not None]

    async def training_session_owner(self, training_session_id: UUID) -> UUID | None:
        """The athlete a training_sessions row belongs to; None when there is none."""
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT user_id FROM training_sessions WHERE id = %s", (training_session_id,)
            )
            row = await cur.fetchone()
            owner: UUID | None = None if row is None else row["user_id"]
            return owner

    async def transition(self, session_id: UUID, action: str) -> tuple[Row | None, bool]:
        """Apply a lifecycle action; (row, changed). ``changed`` False: not allowed now."""
        allowed, target = TRANSITIONS[action]
        async with self._cursor() as cur:
            await cur.execute(
                "UPDATE live_training_sessions SET status = %s,"
                " last_update_at = NOW()"
                " WHERE id = %s AND status = ANY(%s) RETURNING *",
                (target, session_id, list(allowed)),
            )
            row = await cur.fetchone()
            if row is not None:
                return _clean(row), True
        return await self.get_session(session_id), False

    # --- metrics ----------------------------------------------------------------------

    async def metrics_history(
        self,
        session_id: UUID,
        *,
        metric_types: list[str] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        bucket_s: float | None,
        max_points: int,
    ) -> tuple[float, list[Row]]:
        """Per metric, buckets of ``bucket_s`` (chosen from ``max_points`` when None)."""
        clause, params = _metrics_where(session_id, metric_types, since, until)
        async with self._cursor() as cur:
            if bucket_s is None:
                await cur.execute(
                    "SELECT EXTRACT(EPOCH FROM MAX(timestamp) - MIN(timestamp))::float AS span"
                    f" FROM live_metrics WHERE {clause}",
                    params,
                )
                span_row = await cur.fetchone()
                span = float(span_row["span"] or 0.0) if span_row else 0.0
                bucket_s = max(1.0, math.ceil(span / max(1, max_points)))
            await cur.execute(
                "SELECT metric_type,"
                " to_timestamp(floor(EXTRACT(EPOCH FROM timestamp) / %s) * %s) AS bucket,"
                " AVG(value) AS avg, MIN(value) AS min, MAX(value) AS max, COUNT(*) AS n"
                f" FROM live_metrics WHERE {clause}"
                " GROUP BY 1, 2 ORDER BY 1, 2",
                [bucket_s, bucket_s, *params],
            )
            rows = [_clean(r) for r in await cur.fetchall()]
        return bucket_s, [r for r in rows if r is not None]

    async def metrics_series(
        self,
        session_id: UUID,
        *,
        metric_types: list[str] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
    ) -> dict[str, tuple[list[float], list[float]]]:
        """Per metric, its samples as (epoch seconds, values), oldest first."""
        clause, params = _metrics_where(session_id, metric_types, since, until)
        out: dict[str, tuple[list[float], list[float]]] = {}
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT metric_type, EXTRACT(EPOCH FROM timestamp)::float8 AS t, value"
                f" FROM live_metrics WHERE {clause} ORDER BY metric_type, timestamp",
                params,
            )
            for row in await cur.fetchall():
                xs, ys = out.setdefault(row["metric_type"], ([], []))
                xs.append(row["t"])
                ys.append(row["value"])
        return out

    async def latest_metrics(self, session_id: UUID) -> dict[str, Any]:
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT DISTINCT ON (metric_type) metric_type, value, timestamp"
                " FROM live_metrics WHERE live_session_id = %s"
                " ORDER BY metric_type, timestamp DESC",
                (session_id,),
            )
            rows = await cur.fetchall()
        return {r["metric_type"]: {"value": r["value"], "at": iso(r["timestamp"])} for r in rows}

    # --- alerts -----------------------------------------------------------------------

    async def alerts(
        self, session_id: UUID, *, unacknowledged: bool = False, limit: int = 100
    ) -> list[Row]:
        extra = " AND acknowledged_at IS NULL" if unacknowledged else ""
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT * FROM live_alerts WHERE live_session_id = %s"
                f"{extra} ORDER BY triggered_at DESC, id LIMIT %s",
                (session_id, limit),
            )
            return [r for r in map(_clean, await cur.fetchall()) if r is not None]

    async def get_alert(self, alert_id: UUID) -> Row | None:
        async with self._cursor() as cur:
            await cur.execute("SELECT * FROM live_alerts WHERE id = %s", (alert_id,))
            return _clean(await cur.fetchone())

    async def ack_alert(self, alert_id: UUID, user_id: UUID) -> Row | None:
        """Acknowledge once; a repeated ack keeps the first time and person."""
        async with self._cursor() as cur:
            await cur.execute(
                "UPDATE live_alerts SET acknowledged_at ="
                " COALESCE(acknowledged_at, NOW()),"
                " acknowledged_by = COALESCE(acknowledged_by, %s)"
                " WHERE id = %s RETURNING *",
                (user_id, alert_id),
            )
            return _clean(await cur.fetchone())

    # --- profiles ---------------------------------------------------------------------

    async def get_profile(self, user_id: UUID) -> Row | None:
        async with self._cursor() as cur:
            await cur.execute("SELECT * FROM athlete_profiles WHERE user_id = %s", (user_id,))
            return _clean(await cur.fetchone())

    async def put_profile(self, user_id: UUID, fields: dict[str, Any]) -> Row:
        """Insert or update the given columns (others keep their value or default)."""
        columns = list(fields)
        values = [Jsonb(v) if isinstance(v, dict) else v for v in fields.values()]
        names = ", ".join(["user_id", *columns])
        marks = ", ".join(["%s"] * (len(columns) + 1))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
        updates = ", ".join(filter(None, [updates, "updated_at = NOW()"]))
        async with self._cursor(**fields) as cur:
            await cur.execute(
                f"INSERT INTO athlete_profiles ({names}) VALUES ({marks})"
                f" ON CONFLICT (user_id) DO UPDATE SET {updates} RETURNING *",
                [user_id, *values],
            )
            row = _clean(await cur.fetchone())
            assert row is not None
            return row

    # --- chat -------------------------------------------------------------------------

    async def insert_message(
        self,
        *,
        session_id: UUID,
        sender_id: UUID,
        text: str,
        message_type: str,
        client_message_id: str | None,
        recipient_id: UUID | None = None,
    ) -> tuple[Row, bool]:
        """Persist a message; (row, created). A retried client id returns the first row.
        Without ``recipient_id``: the session's coach for the athlete's messages (NULL,
        everyone, when the session has none), else the athlete."""
        async with self._cursor(text=text, client_message_id=client_message_id) as cur:
            # The recipient: the session's coach for the athlete's messages, else the athlete.
            await cur.execute(
                "INSERT INTO live_messages (live_session_id, sender_id, recipient_id,"
                " message_type, message, client_message_id)"
                " SELECT s.id, %(sender)s, COALESCE(%(recipient)s::uuid,"
                " CASE WHEN s.user_id = %(sender)s THEN s.coach_id ELSE s.user_id END),"
                " %(type)s, %(text)s, %(client)s FROM live_training_sessions s"
                " WHERE s.id = %(session)s"
                " ON CONFLICT (live_session_id, sender_id, client_message_id)"
                " WHERE client_message_id IS NOT NULL DO NOTHING RETURNING *",
                {
                    "session": session_id,
                    "sender": sender_id,
                    "type": message_type,
                    "text": text,
                    "client": client_message_id,
                    "recipient": recipient_id,
                },
            )
            row = await cur.fetchone()
            if row is not None:
                return _clean(row) or {}, True
            await cur.execute(
                "SELECT * FROM live_messages WHERE live_session_id = %s AND sender_id = %s"
                " AND client_message_id = %s",
                (session_id, sender_id, client_message_id),
            )
            return _clean(await cur.fetchone()) or {}, False

    async def messages(self, session_id: UUID, *, before_id: UUID | None, limit: int) -> list[Row]:
        """The session's chat, oldest first: the ``limit`` newest (before ``before_id``).

        Messages are ordered by ``seq`` (the order they were stored in), not by id.
        """
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT m.*, COALESCE((SELECT json_agg(json_build_object("
                "   'reader_id', r.reader_id, 'read_at', r.read_at) ORDER BY r.read_at)"
                "   FROM live_message_reads r WHERE r.message_id = m.id), '[]') AS reads"
                " FROM live_messages m WHERE live_session_id = %s"
                " AND (%s::uuid IS NULL OR seq < ("
                "   SELECT seq FROM live_messages WHERE id = %s AND live_session_id = %s))"
                " ORDER BY seq DESC LIMIT %s",
                (session_id, before_id, before_id, session_id, limit),
            )
            rows = [r for r in map(_clean, await cur.fetchall()) if r is not None]
        rows.reverse()
        return rows

    async def mark_read(self, session_id: UUID, reader_id: UUID, up_to_id: UUID) -> list[UUID]:
        """``reader_id`` read the messages up to ``up_to_id`` that were for them (their
        recipient, or everyone) and not their own; the ids newly read by them, in order.

        One row per (message, reader) in ``live_message_reads``; ``read_at`` of the
        message is its first read (kept for clients that know only it)."""
        async with self._cursor() as cur:
            await cur.execute(
                "WITH targets AS ("
                "   SELECT m.id, m.seq FROM live_messages m WHERE m.live_session_id = %(s)s"
                "   AND m.seq <= (SELECT seq FROM live_messages"
                "                 WHERE id = %(up)s AND live_session_id = %(s)s)"
                "   AND m.sender_id <> %(r)s"
                "   AND (m.recipient_id IS NULL OR m.recipient_id = %(r)s)),"
                " fresh AS ("
                "   INSERT INTO live_message_reads (message_id, reader_id)"
                "   SELECT id, %(r)s FROM targets ON CONFLICT DO NOTHING RETURNING message_id),"
                " first AS ("
                "   UPDATE live_messages SET read_at = NOW()"
                "   WHERE id IN (SELECT message_id FROM fresh) AND read_at IS NULL)"
                " SELECT t.id, t.seq FROM targets t JOIN fresh f ON f.message_id = t.id",
                {"s": session_id, "up": up_to_id, "r": reader_id},
            )
            return [r["id"] for r in sorted(await cur.fetchall(), key=lambda r: r["seq"])]

    async def chat_member(self, session_id: UUID, user_id: UUID) -> bool:
        """Whether ``user_id`` may be a message's recipient in the session's chat: its
        athlete, or a coach linked to them."""
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT 1 FROM live_training_sessions s WHERE s.id = %(s)s AND (s.user_id = %(u)s"
                " OR EXISTS (SELECT 1 FROM coach_athletes l"
                "            WHERE l.athlete_id = s.user_id AND l.coach_id = %(u)s))",
                {"s": session_id, "u": user_id},
            )
            return await cur.fetchone() is not None

    # --- groups (docs/groups.md) ------------------------------------------------------

    async def create_group(self, coach_id: UUID, fields: dict[str, Any]) -> Row:
        """A new group of ``coach_id``: ``name``, ``sport``, ``kind``, ``starts_at``,
        ``distance_m``, ``plan``."""
        async with self._cursor(**fields) as cur:
            await cur.execute(
                "INSERT INTO live_groups (coach_id, name, sport, kind, starts_at, distance_m, plan)"
                " VALUES (%(coach)s, %(name)s, %(sport)s, %(kind)s, %(starts_at)s,"
                " %(distance_m)s, %(plan)s) RETURNING *",
                {
                    **fields,
                    "coach": coach_id,
                    "starts_at": utc_aware(fields["starts_at"]),
                    "plan": Jsonb(fields["plan"]) if fields.get("plan") is not None else None,
                },
            )
            row = _clean(await cur.fetchone())
            assert row is not None
            return row

    async def get_group(self, group_id: UUID) -> Row | None:
        async with self._cursor() as cur:
            await cur.execute("SELECT * FROM live_groups WHERE id = %s", (group_id,))
            return _clean(await cur.fetchone())

    async def group_members(self, group_id: UUID) -> list[Row]:
        """The group's members with their names, by name."""
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT m.athlete_id, u.name, m.invited_at, m.session_id, m.joined_at,"
                " m.left_at FROM live_group_members m JOIN users u ON u.id = m.athlete_id"
                " WHERE m.group_id = %s ORDER BY u.name, m.athlete_id",
                (group_id,),
            )
            return [r for r in map(_clean, await cur.fetchall()) if r is not None]

    async def group_of_session(self, session_id: UUID) -> Row | None:
        """The group a session is in (joined, not left); None if none."""
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT g.* FROM live_group_members m JOIN live_groups g ON g.id = m.group_id"
                " WHERE m.session_id = %s AND m.left_at IS NULL",
                (session_id,),
            )
            return _clean(await cur.fetchone())

    async def group_member(self, group_id: UUID, athlete_id: UUID) -> Row | None:
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT * FROM live_group_members WHERE group_id = %s AND athlete_id = %s",
                (group_id, athlete_id),
            )
            return _clean(await cur.fetchone())

    async def groups_of(self, user_id: UUID, role: str, *, limit: int) -> list[Row]:
        """A coach's groups, or the groups an athlete is a member of; newest start first."""
        where = (
            "g.coach_id = %(u)s"
            if role == "coach"
            else "EXISTS (SELECT 1 FROM live_group_members m"
            " WHERE m.group_id = g.id AND m.athlete_id = %(u)s)"
        )
        async with self._cursor() as cur:
            await cur.execute(
                f"SELECT g.* FROM live_groups g WHERE {where}"
                " ORDER BY g.starts_at DESC, g.id LIMIT %(limit)s",
                {"u": user_id, "limit": limit},
            )
            return [r for r in map(_clean, await cur.fetchall()) if r is not None]

    async def add_group_member(self, group_id: UUID, athlete_id: UUID) -> tuple[Row, bool]:
        """Invite an athlete; (member row, created). Inviting twice is not an error."""
        async with self._cursor(athlete_id=athlete_id) as cur:
            await cur.execute(
                "INSERT INTO live_group_members (group_id, athlete_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING RETURNING *",
                (group_id, athlete_id),
            )
            row = await cur.fetchone()
            if row is not None:
                return _clean(row) or {}, True
        existing = await self.group_member(group_id, athlete_id)
        return existing or {}, False

    async def remove_group_member(self, group_id: UUID, athlete_id: UUID) -> Row | None:
        """Remove a member; the row it had (None: it was not a member)."""
        async with self._cursor() as cur:
            await cur.execute(
                "DELETE FROM live_group_members WHERE group_id = %s AND athlete_id = %s"
                " RETURNING *",
                (group_id, athlete_id),
            )
            return _clean(await cur.fetchone())

    async def join_group(
        self, group_id: UUID, athlete_id: UUID, session_id: UUID, *, at_start: bool = False
    ) -> Row | None:
        """Record that a member joined with ``session_id`` (again, after leaving, is
        allowed) and mark the group live; None if the group is finished or the athlete
        not a member. A session in another group is refused by the unique index (409).
        ``at_start``: joined with its start, ``joined_at`` is the session's ``started_at``
        (a replay then joins it at its start, whatever the device's clock)."""
        async with self._cursor(session_id=session_id) as cur:
            await cur.execute(
                "UPDATE live_group_members m SET session_id = %(s)s, joined_at ="
                " CASE WHEN %(start)s THEN (SELECT started_at FROM live_training_sessions"
                " WHERE id = %(s)s) ELSE NOW() END,"
                " left_at = NULL FROM live_groups g"
                " WHERE m.group_id = %(g)s AND m.athlete_id = %(a)s AND g.id = m.group_id"
                " AND g.status <> 'finished' RETURNING m.*",
                {"g": group_id, "a": athlete_id, "s": session_id, "start": at_start},
            )
            row = _clean(await cur.fetchone())
            if row is not None:
                await cur.execute(
                    "UPDATE live_groups SET status = 'live' WHERE id = %s AND status = 'scheduled'",
                    (group_id,),
                )
            return row

    async def leave_group(self, group_id: UUID, athlete_id: UUID) -> Row | None:
        """Mark a joined member as gone; the row (None: not joined, or left already)."""
        async with self._cursor() as cur:
            await cur.execute(
                "UPDATE live_group_members SET left_at = NOW() WHERE group_id = %s"
                " AND athlete_id = %s AND session_id IS NOT NULL AND left_at IS NULL RETURNING *",
                (group_id, athlete_id),
            )
            return _clean(await cur.fetchone())

    async def finish_group(self, group_id: UUID) -> Row | None:
        """Finish a group (again: keeps the first ``finished_at``); its row."""
        async with self._cursor() as cur:
            await cur.execute(
                "UPDATE live_groups SET status = 'finished',"
                " finished_at = COALESCE(finished_at, NOW()) WHERE id = %s RETURNING *",
                (group_id,),
            )
            return _clean(await cur.fetchone())

    async def group_standings(self, group_id: UUID) -> list[Row]:
        """The stored final standings (written by the store app), by rank (no data last)."""
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT athlete_id, rank, standing, computed_at FROM live_group_standings"
                " WHERE group_id = %s ORDER BY rank NULLS LAST, athlete_id",
                (group_id,),
            )
            return [r for r in map(_clean, await cur.fetchall()) if r is not None]

    async def insert_group_message(
        self, group_id: UUID, sender_id: UUID, text: str, client_message_id: str | None
    ) -> tuple[Row, bool]:
        """Persist a group message; (row, created). A retried client id returns the first."""
        async with self._cursor(message=text, client_message_id=client_message_id) as cur:
            await cur.execute(
                "INSERT INTO live_group_messages (group_id, sender_id, message, client_message_id)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (group_id, sender_id, client_message_id)"
                " WHERE client_message_id IS NOT NULL DO NOTHING RETURNING *",
                (group_id, sender_id, text, client_message_id),
            )
            row = _clean(await cur.fetchone())
            if row is not None:
                return row, True
            await cur.execute(
                "SELECT * FROM live_group_messages WHERE group_id = %s AND sender_id = %s"
                " AND client_message_id = %s",
                (group_id, sender_id, client_message_id),
            )
            return _clean(await cur.fetchone()) or {}, False

    async def group_messages(
        self, group_id: UUID, *, before_id: UUID | None, limit: int
    ) -> list[Row]:
        """The group's chat, oldest first: the ``limit`` newest (before ``before_id``)."""
        async with self._cursor() as cur:
            await cur.execute(
                "SELECT * FROM live_group_messages WHERE group_id = %(g)s"
                " AND (%(b)s::uuid IS NULL OR (created_at, id) < ("
                "   SELECT created_at, id FROM live_group_messages"
                "   WHERE id = %(b)s AND group_id = %(g)s))"
                " ORDER BY created_at DESC, id DESC LIMIT %(n)s",
                {"g": group_id, "b": before_id, "n": limit},
            )
            rows = [r for r in map(_clean, await cur.fetchall()) if r is not None]
        rows.reverse()
        return rows
