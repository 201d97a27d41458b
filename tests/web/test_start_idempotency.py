"""``Idempotency-Key`` on session start (issue 15 item 22): a client whose start timed
out (PostgreSQL slow or away) retries with the same key and gets the session its first
request created, never a second one left open. Real edge, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from tests.web.conftest import ATHLETE, COACH, OTHER_ATHLETE

pytestmark = pytest.mark.integration

START = "/api/v1/live/sessions/start"


def _sessions(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM live_training_sessions").fetchone()
        assert row is not None
        return int(row[0])


async def _start(edge: Any, key: str, user: Any = ATHLETE, body: Any = None) -> Any:
    headers = {**edge.headers(user), "Idempotency-Key": key}
    async with edge.session.post(edge.url(START), json=body or {}, headers=headers) as resp:
        return resp.status, resp.headers.get("Idempotent-Replayed"), await resp.json()


async def test_a_retry_with_the_same_key_gets_the_same_session(
    edge: Any, database_url: str
) -> None:
    status, replayed, first = await _start(edge, "start-7f3a", body={"sport": "run"})
    assert status == 201 and replayed is None, first
    # The retry after a timeout: the same answer, marked as replayed, and no new row.
    status, replayed, again = await _start(edge, "start-7f3a", body={"sport": "run"})
    assert (status, replayed) == (201, "true") and again == first
    assert _sessions(database_url) == 1
    # Keys are per user: another athlete's same key is another session.
    status, replayed, other = await _start(edge, "start-7f3a", user=OTHER_ATHLETE)
    assert status == 201 and replayed is None and other["id"] != first["id"]
    # A new key: a new session.
    status, _, new = await _start(edge, "start-8000")
    assert status == 201 and new["id"] != first["id"]
    assert _sessions(database_url) == 3


async def test_concurrent_retries_make_one_session(edge: Any, database_url: str) -> None:
    answers = await asyncio.gather(*(_start(edge, "racing") for _ in range(6)))
    ids = {body["id"] for status, _, body in answers if status == 201}
    assert len(ids) == 1, answers
    # A retry that arrives while the first is still in progress: 409, nothing made.
    assert {status for status, _, _ in answers} <= {201, 409}, answers
    assert _sessions(database_url) == 1


async def test_a_refused_start_does_not_keep_its_key(edge: Any, database_url: str) -> None:
    # A coach must name the athlete: 403, and the key is free for the corrected request.
    status, _, problem = await _start(edge, "coach-1", user=COACH)
    assert status == 403, problem
    headers = {**edge.headers(COACH, "coach"), "Idempotency-Key": "coach-1"}
    async with edge.session.post(
        edge.url(START), json={"athlete_id": str(ATHLETE)}, headers=headers
    ) as resp:
        assert resp.status == 201, await resp.text()
    assert _sessions(database_url) == 1


@pytest.mark.parametrize("key", ["", "k" * 129, "tab\there"])
async def test_a_malformed_key_is_a_422_naming_it(edge: Any, database_url: str, key: str) -> None:
    status, _, problem = await _start(edge, key)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "Idempotency-Key", problem
    assert _sessions(database_url) == 0


def _start_records(redis_url: str, session_id: str) -> int:
    """How many start records of ``session_id`` reached ``samples`` (every partition)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        count = 0
        for stream in client.scan_iter(match="*samples*", _type="stream"):
            for _, fields in client.xrange(stream):
                for value in fields.values():
                    text = value.decode(errors="replace")
                    count += session_id in text and '"action":"start"' in text
        return count
    finally:
        client.close()


async def test_a_start_whose_announcement_failed_is_finished_by_its_retry(
    edge_factory: Any, database_url: str, redis_url: str
) -> None:
    # Edge A makes the row, then cannot have its start record confirmed by a replica
    # (durable acknowledgement on, none attached): 503. The client retries through
    # edge B with the same key: the same session, announced, and no second row.
    unconfirmed = await edge_factory(durable_ack_ms=50)
    status, _, problem = await _start(unconfirmed, "flaky-1", body={"sport": "ride"})
    assert status == 503, problem
    assert _sessions(database_url) == 1
    healthy = await edge_factory()
    status, replayed, first = await _start(healthy, "flaky-1", body={"sport": "ride"})
    assert (status, replayed) == (201, None), first
    assert _sessions(database_url) == 1
    assert first["metadata"] == {"sport": "ride"}
    assert _start_records(redis_url, first["id"]) >= 1
    # Answered now: a further retry replays the answer.
    status, replayed, again = await _start(healthy, "flaky-1", body={"sport": "ride"})
    assert (status, replayed, again) == (201, "true", first)
    assert _sessions(database_url) == 1
