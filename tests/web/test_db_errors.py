"""PostgreSQL's refusals of a request's data are 4xx problems naming the field; only a
failing server is a 503, and every 503 is logged with its cause.

Each class is produced by the real PostgreSQL (a statement it refuses), then put
through the edge's one translation table; a few are also driven end to end through
REST over a loopback socket.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from pipeline.errors import DataRejected
from tests.web.conftest import ATHLETE, COACH, Running
from tests.web.issuer import host_user_id as uid
from web.problems import db_problem
from web.store import Store, StoreError

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(database_url: str, users: None) -> AsyncIterator[Store]:
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False)
    await pool.open(wait=True)
    yield Store(pool)
    await pool.close()


# name: (statement, parameters, the request's fields it writes) -> (status, field, SQLSTATE)
CASES: list[tuple[str, str, tuple[Any, ...], dict[str, Any], int, str, str | None]] = [
    ("unique", "INSERT INTO users (id, role) VALUES (%s, 'coach')", (COACH,),
     {"id": COACH, "role": "coach"}, 409, "id", "23505"),
    ("foreign key", "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
     (uid(999), ATHLETE), {"coach_id": uid(999), "athlete_id": ATHLETE}, 422, "coach_id",
     "23503"),
    ("check", "INSERT INTO users (id, role) VALUES (%s, %s)", (uid(50), "boss"),
     {"id": uid(50), "role": "boss"}, 422, "role", "23514"),
    ("check on a profile", "INSERT INTO athlete_profiles (user_id, hr_max) VALUES (%s, %s)",
     (ATHLETE, 400), {"hr_max": 400}, 422, "hr_max", "23514"),
    ("not null", "INSERT INTO users (id, role) VALUES (%s, %s)", (uid(51), None),
     {"id": uid(51), "role": None}, 422, "role", "23502"),
    ("invalid text representation", "SELECT %s::integer", ("abc",), {"limit": "abc"},
     422, "limit", "22P02"),
    ("numeric out of range",
     "INSERT INTO athlete_profiles (user_id, lthr, hr_max) VALUES (%s, %s, %s)",
     (ATHLETE, 150, 2**40), {"lthr": 150, "hr_max": 2**40}, 422, "hr_max",
     "22003"),
    ("string too long", "INSERT INTO users (id, role, name) VALUES (%s, %s, %s)",
     (uid(52), "coach", "x" * 300), {"id": uid(52), "role": "coach", "name": "x" * 300}, 422,
     "name", "22001"),
    ("NUL in text", "INSERT INTO users (id, role, name) VALUES (%s, %s, %s)",
     (uid(53), "coach", "a\x00b"), {"id": uid(53), "role": "coach", "name": "a\x00b"}, 422,
     "name", None),
    ("NUL in JSON", "SELECT %s::text, %s::jsonb", ("x", '{"note": "\\u0000"}'),
     {"sport": "x", "metadata": {"note": "\x00"}}, 422, "metadata", "22P05"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("sql", "params", "fields", "status", "field", "sqlstate"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
async def test_each_refusal_class_is_a_4xx_naming_the_field(
    store: Store,
    sql: str,
    params: tuple[Any, ...],
    fields: dict[str, Any],
    status: int,
    field: str,
    sqlstate: str | None,
) -> None:
    with pytest.raises(DataRejected) as caught:
        async with store._cursor(**fields) as cur:
            await cur.execute(sql, params)
    assert getattr(caught.value.cause, "sqlstate", None) == sqlstate
    problem = db_problem(caught.value)
    assert problem.errors is not None
    assert (problem.status, problem.errors[0]["field"]) == (status, field), problem.detail
    assert problem.detail is not None and problem.detail.startswith(f"{field}: ")


async def test_a_lost_server_is_a_store_error_not_a_4xx(store: Store) -> None:
    with pytest.raises(StoreError):
        async with store._cursor() as cur:
            await cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/sessions/start", {"training_session_id": 2**40}, "training_session_id"),
        ("/sessions/start", {"metadata": {"note": "a\u0000b"}}, "metadata"),
    ],
)
async def test_request_data_postgresql_refuses_is_422_over_rest(
    edge: Running, path: str, body: dict[str, Any], field: str
) -> None:
    async with edge.session.post(
        edge.url(f"/api/v1/live{path}"), json=body, headers=edge.headers(ATHLETE)
    ) as resp:
        problem = await resp.json()
        assert resp.status == 422, problem
    assert problem["errors"][0]["field"] == field


async def test_a_chat_message_with_a_nul_byte_is_422_naming_text(edge: Running) -> None:
    session_id = await edge.start_session(ATHLETE)
    async with edge.session.post(
        edge.url("/api/v1/live/messages"),
        json={"session_id": session_id, "text": "a\u0000b"},
        headers=edge.headers(ATHLETE),
    ) as resp:
        problem = await resp.json()
        assert resp.status == 422, problem
    assert problem["detail"] == "text: contains a NUL byte, which text cannot hold"


async def test_every_503_is_logged_with_its_cause(
    edge: Running, caplog: pytest.LogCaptureFixture
) -> None:
    store = edge.edge.need_store()
    healthy = store.pool
    # A pool whose server has gone: connections are refused on a closed loopback port.
    store.pool = AsyncConnectionPool(
        "postgresql://postgres@127.0.0.1:9/none", min_size=0, max_size=1, open=False, timeout=1.0
    )
    await store.pool.open(wait=False)
    try:
        with caplog.at_level(logging.WARNING, logger="web.problems"):
            async with edge.session.get(
                edge.url("/api/v1/live/admin/users"), headers=edge.headers(uid(700))
            ) as resp:
                assert resp.status == 503
    finally:
        await store.pool.close()
        store.pool = healthy
    during = "503 during GET /api/v1/live/admin/users"
    logged = [r.getMessage() for r in caplog.records if during in r.getMessage()]
    assert logged and "StoreError" in logged[0] and "caused by" in logged[0], logged
