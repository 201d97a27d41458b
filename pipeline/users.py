"""Users and coach-athlete links: the SQL of the user directory, shared by the edge
(provisioning, the admin REST surface) and ``livecoach users`` (the CLI).

A user is keyed by the host product's user id, which is the ``sub`` of its tokens:
:data:`UserId` is the one type of that id and :func:`parse_user_id` the one place it is
read from text (a token's ``sub``, a path segment, a CLI argument). What a user may do
comes from ``users.role`` here, never from a token's claim.

Every function takes an open psycopg cursor with ``dict_row`` rows, so the caller owns
the connection and the transaction (a pool connection on the edge, one connection in
the CLI). Changes to links and roles are announced to every edge by triggers of
migration 0004 (``NOTIFY livecoach_access``), whoever makes them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal, get_args

import psycopg
from pydantic import Field

from pipeline.ids import parse_uuid

#: The host's user id as livecoach stores it (the token's ``sub``): a UUID.
UserId = uuid.UUID
Role = Literal["athlete", "coach", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
#: A user id in a request body (pydantic) and its JSON Schema (OpenAPI parameters).
UserIdIn = Annotated[UserId, Field(description="the host's user id (a token's sub), a UUID")]
USER_ID_SCHEMA: dict[str, Any] = {"type": "string", "format": "uuid"}
#: PostgreSQL channel of the access triggers (migration 0004).
ACCESS_CHANNEL = "livecoach_access"

Row = dict[str, Any]
Cursor = psycopg.AsyncCursor[Row]

_USER_COLUMNS = "id, email, name, role, created_at"


def parse_user_id(text: object) -> UserId:
    """A user id from text (a token's ``sub``); ValueError saying what was expected."""
    return parse_uuid(text, "a user id")


def _out(row: Row | None) -> Row | None:
    if row is None:
        return None
    created = row.get("created_at")
    if isinstance(created, dt.datetime):
        if created.tzinfo is not None:
            created = created.astimezone(dt.UTC).replace(tzinfo=None)
        row = {**row, "created_at": created.isoformat(timespec="milliseconds") + "Z"}
    return row


async def get_user(cur: Cursor, user_id: UserId) -> Row | None:
    await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
    return _out(await cur.fetchone())


async def roles_of(cur: Cursor, user_ids: list[UserId]) -> dict[UserId, Role]:
    """The role of each of these users that exists (one query for any number)."""
    await cur.execute("SELECT id, role FROM users WHERE id = ANY(%s)", (user_ids,))
    return {row["id"]: row["role"] for row in await cur.fetchall()}


async def provision_user(cur: Cursor, user_id: UserId, *, role: Role, name: str) -> Row:
    """The user, created on first contact; concurrent first contacts make one row.

    ``ON CONFLICT DO NOTHING`` lets the loser of a race (two edges, one new user) read
    the winner's row instead of failing on the primary key; an existing user's role and
    name are never changed by a token.
    """
    await cur.execute(
        f"INSERT INTO users (id, name, role) VALUES (%s, %s, %s)"
        f" ON CONFLICT (id) DO NOTHING RETURNING {_USER_COLUMNS}",
        (user_id, name, role),
    )
    row = _out(await cur.fetchone())
    if row is not None:
        return row
    existing = await get_user(cur, user_id)
    assert existing is not None, "a conflicting user row vanished"  # users are not deleted
    return existing


async def add_user(
    cur: Cursor, user_id: UserId, *, role: Role, name: str, email: str | None = None
) -> tuple[Row, bool]:
    """Create the user or update its role, name (and email when given); (row, created)."""
    await cur.execute(
        f"INSERT INTO users (id, name, role, email) VALUES (%s, %s, %s, %s)"
        f" ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, name = EXCLUDED.name,"
        f" email = COALESCE(EXCLUDED.email, users.email)"
        f" RETURNING {_USER_COLUMNS}, (xmax = 0) AS created",
        (user_id, name, role, email),
    )
    row = await cur.fetchone()
    assert row is not None
    created = bool(row.pop("created"))
    out = _out(row)
    assert out is not None
    return out, created


async def list_users(
    cur: Cursor, *, role: Role | None = None, after: UserId | None = None, limit: int = 100
) -> list[Row]:
    """Users ordered by id, ``limit`` of them after ``after`` (keyset pagination)."""
    where, params = _where({"role = %s": role, "id > %s": after})
    await cur.execute(
        f"SELECT {_USER_COLUMNS} FROM users{where} ORDER BY id LIMIT %s", [*params, limit]
    )
    return [r for r in map(_out, await cur.fetchall()) if r is not None]


class LinkRefused(ValueError):
    """A link between users whose roles do not fit; ``field`` names the wrong one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def link(cur: Cursor, coach_id: UserId, athlete_id: UserId) -> tuple[Row, bool]:
    """Link a coach to an athlete; (link, created). Linking twice is not an error.

    LinkRefused when ``coach_id`` is not a coach or ``athlete_id`` not an athlete; an
    unknown id is left to the foreign key (a classified database error).
    """
    for field, user_id, role in (
        ("coach_id", coach_id, "coach"),
        ("athlete_id", athlete_id, "athlete"),
    ):
        user = await get_user(cur, user_id)
        if user is not None and user["role"] != role:
            raise LinkRefused(
                field,
                f"user {user_id} has role {user['role']!r}, not {role!r}",
            )
    await cur.execute(
        "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)"
        " ON CONFLICT (coach_id, athlete_id) DO NOTHING RETURNING coach_id, athlete_id, created_at",
        (coach_id, athlete_id),
    )
    row = await cur.fetchone()
    if row is not None:
        return _out(row) or {}, True
    await cur.execute(
        "SELECT coach_id, athlete_id, created_at FROM coach_athletes"
        " WHERE coach_id = %s AND athlete_id = %s",
        (coach_id, athlete_id),
    )
    return _out(await cur.fetchone()) or {}, False


async def unlink(cur: Cursor, coach_id: UserId, athlete_id: UserId) -> bool:
    """Remove a link; whether there was one. The trigger tells every edge."""
    await cur.execute(
        "DELETE FROM coach_athletes WHERE coach_id = %s AND athlete_id = %s",
        (coach_id, athlete_id),
    )
    return cur.rowcount > 0


async def list_links(
    cur: Cursor, *, coach_id: UserId | None = None, athlete_id: UserId | None = None
) -> list[Row]:
    where, params = _where({"coach_id = %s": coach_id, "athlete_id = %s": athlete_id})
    await cur.execute(
        f"SELECT coach_id, athlete_id, created_at FROM coach_athletes{where}"
        " ORDER BY coach_id, athlete_id",
        params,
    )
    return [r for r in map(_out, await cur.fetchall()) if r is not None]


def _where(conditions: dict[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a AND b`` of the conditions whose value is given, and their values.

    Built in Python rather than ``%s IS NULL OR ...`` so that no parameter needs a cast
    naming the id's SQL type.
    """
    given = {sql: value for sql, value in conditions.items() if value is not None}
    clause = " AND ".join(given)
    return (f" WHERE {clause}" if clause else ""), list(given.values())
