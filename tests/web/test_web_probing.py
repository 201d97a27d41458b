"""Probing session ids tells nothing and blocks nobody (issue 15, items 6 and 17)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import psycopg
import pytest

from tests.web.conftest import ATHLETE, COACH, OTHER_ATHLETE, OTHER_COACH, EdgeFactory, Running

pytestmark = pytest.mark.integration

API = "/api/v1/live"


def _next_session_id(database_url: str) -> int:
    """The id the next session will get (the sequence is not consumed)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END"
            " FROM live_training_sessions_id_seq"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _get(edge: Running, path: str, user: int = ATHLETE, role: str = "athlete") -> int:
    async with edge.session.get(edge.url(API + path), headers=edge.headers(user, role)) as r:  # type: ignore[arg-type]
        await r.read()
        return r.status


async def test_a_probe_on_one_edge_does_not_hide_a_new_session(
    edge_factory: EdgeFactory, database_url: str
) -> None:
    edge_a, edge_b = await edge_factory(), await edge_factory()
    upcoming = _next_session_id(database_url)
    # Someone probes the next id on edge B before it exists ...
    assert await _get(edge_b, f"/sessions/{upcoming}") == 404
    # ... then the athlete starts that session on edge A ...
    created = await edge_a.start_session(ATHLETE)
    assert created == upcoming
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


def _shape(problem: dict[str, Any], session_id: int) -> dict[str, Any]:
    """A problem with the probed id taken out of its text."""
    return {k: re.sub(rf"\b{session_id}\b", "{id}", str(v)) for k, v in problem.items()}


async def _answer(
    edge: Running, method: str, path: str, body: Any, user: int, role: str
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
    edge: Running, user: int, role: str, database_url: str
) -> None:
    theirs = await edge.start_session(ATHLETE)
    missing = _next_session_id(database_url) + 1000
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/sessions/{id}", None),
        ("GET", "/sessions/{id}/metrics", None),
        ("GET", "/sessions/{id}/alerts", None),
        ("GET", "/sessions/{id}/presence", None),
        ("GET", "/messages/{id}", None),
        ("POST", "/sessions/{id}/update", {"t": time.time(), "heart_rate": 120}),
        ("POST", "/sessions/{id}/pause", {}),
        ("POST", "/sessions/{id}/stop", {}),
        ("POST", "/messages/{id}/read", {"up_to_id": 1}),
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
