"""Probing session ids tells nothing and blocks nobody (issue 15, items 6 and 17)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.web.conftest import ATHLETE, COACH, OTHER_ATHLETE, OTHER_COACH, EdgeFactory, Running

pytestmark = pytest.mark.integration

API = "/api/v1/live"


def _insert_session(database_url: str, session_id: uuid.UUID) -> None:
    """A session with a chosen id, as another edge would have started it (ids are random
    UUIDs: a client cannot know the next one, so the test picks it)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO live_training_sessions (id, user_id) VALUES (%s, %s)",
            (session_id, ATHLETE),
        )


async def _get(edge: Running, path: str, user: UUID = ATHLETE, role: str = "athlete") -> int:
    async with edge.session.get(edge.url(API + path), headers=edge.headers(user, role)) as r:  # type: ignore[arg-type]
        await r.read()
        return r.status


async def test_a_probe_on_one_edge_does_not_hide_a_new_session(
    edge_factory: EdgeFactory, database_url: str
) -> None:
    edge_b = await edge_factory()  # the edge that was probed
    created = uuid.uuid4()
    # Someone probes an id on edge B before it exists ...
    assert await _get(edge_b, f"/sessions/{created}") == 404
    # ... then a session with that id is started (through the database: ids are random) ...
    _insert_session(database_url, created)
    started = time.monotonic()
    # ... and sees it on edge B within about a second (it was 300 s).
    while (status := await _get(edge_b, f"/sessions/{created}")) == 404:
        assert time.monotonic() - started < 3.0, "edge B still answers 404 after 3 s"
        await asyncio.sleep(0.05)
    waited_s = time.monotonic() - started
    print(f"new session visible on edge B after {waited_s:.2f} s")
    assert status == 200
    assert waited_s < 1.5, waited_s
    # Samples are taken on B too (the upload path reads the same cache).
    async with edge_b.session.post(
        edge_b.url(f"{API}/sessions/{created}/update"),
        json={"t": time.time(), "heart_rate": 120},
        headers=edge_b.headers(),
    ) as r:
        assert r.status == 202, await r.text()


def _shape(problem: dict[str, Any], session_id: str) -> dict[str, Any]:
    """A problem with the probed id taken out of its text."""
    return {k: re.sub(rf"\b{session_id}\b", "{id}", str(v)) for k, v in problem.items()}


async def _answer(
    edge: Running, method: str, path: str, body: Any, user: UUID, role: str
) -> tuple[int, dict[str, Any]]:
    async with edge.session.request(
        method,
        edge.url(API + path),
        json=body,
        headers=edge.headers(user, role),  # type: ignore[arg-type]
    ) as r:
        return r.status, await r.json()


@pytest.mark.parametrize(("user", "role"), [(OTHER_ATHLETE, "athlete"), (OTHER_COACH, "coach")])
async def test_missing_and_not_yours_get_the_same_answer(
    edge: Running, user: UUID, role: str, database_url: str
) -> None:
    theirs = await edge.start_session(ATHLETE)
    missing = str(uuid.uuid4())
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/sessions/{id}", None),
        ("GET", "/sessions/{id}/metrics", None),
        ("GET", "/sessions/{id}/alerts", None),
        ("GET", "/sessions/{id}/presence", None),
        ("GET", "/messages/{id}", None),
        ("POST", "/sessions/{id}/update", {"t": time.time(), "heart_rate": 120}),
        ("POST", "/sessions/{id}/pause", {}),
        ("POST", "/sessions/{id}/stop", {}),
        ("POST", "/messages/{id}/read", {"up_to_id": str(uuid.uuid4())}),
    ]
    for method, template, body in requests:
        answers = []
        for sid in (theirs, missing):
            status, problem = await _answer(edge, method, template.format(id=sid), body, user, role)
            answers.append((status, _shape(problem, sid)))
        assert answers[0] == answers[1], (method, template, answers)
        assert answers[0][0] == 404, (method, template, answers)
    status_a, message_a = await _answer(
        edge, "POST", "/messages", {"session_id": theirs, "text": "hi"}, user, role
    )
    status_b, message_b = await _answer(
        edge, "POST", "/messages", {"session_id": missing, "text": "hi"}, user, role
    )
    assert (status_a, _shape(message_a, theirs)) == (status_b, _shape(message_b, missing))
    # The session's own people still see it; the linked coach may not post samples.
    assert await _get(edge, f"/sessions/{theirs}", COACH, "coach") == 200
    status, _ = await _answer(
        edge, "POST", f"/sessions/{theirs}/update", {"t": time.time(), "heart_rate": 120},
        COACH, "coach",
    )  # fmt: skip
    assert status == 403
