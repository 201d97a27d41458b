"""The API the dashboard added: the roster (names and a coach's athletes) and manual
laps (REST and socket), over a real loopback socket, real Redis and PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
import redis.asyncio as aioredis

from pipeline.constants import SAMPLES_TOPIC
from pipeline.records import ControlRecord, samples_topic_record, session_key
from pipeline.transport.streams import partition_for_key, read
from tests.ids import uid
from tests.web.conftest import call as _call

pytestmark = pytest.mark.integration

ATHLETE, COACH, OTHER_COACH, OTHER_ATHLETE = uid(1), uid(2), uid(3), uid(4)


async def _controls(redis_url: str, session_id: str) -> list[ControlRecord]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        p = partition_for_key(session_key(session_id), 4)
        entries = await read(redis, SAMPLES_TOPIC, p, 0)
    finally:
        await redis.aclose()
    records = [samples_topic_record.validate_json(value) for _, (_, value, _, _) in entries]
    return [r for r in records if isinstance(r, ControlRecord) and str(r.session_id) == session_id]


async def test_roster_names_a_coachs_athletes_and_an_athletes_coaches(edge: Any) -> None:
    status, body = await _call(edge, "GET", "/roster", COACH, "coach")
    assert status == 200, body
    assert body["me"] == {"id": str(COACH), "name": f"user {COACH.int}", "role": "coach"}
    assert body["athletes"] == [
        {"id": str(ATHLETE), "name": f"user {ATHLETE.int}", "role": "athlete"}
    ]
    assert body["coaches"] == []

    status, body = await _call(edge, "GET", "/roster", ATHLETE, "athlete")
    assert status == 200
    assert [p["id"] for p in body["athletes"]] == [str(ATHLETE)]
    assert body["coaches"] == [{"id": str(COACH), "name": f"user {COACH.int}", "role": "coach"}]

    # A coach with no athletes lists none (not someone else's).
    status, body = await _call(edge, "GET", "/roster", OTHER_COACH, "coach")
    assert status == 200 and body["athletes"] == []

    async with edge.session.get(edge.url("/api/v1/live/roster")) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"


async def test_manual_lap_over_rest_and_the_socket(edge: Any, redis_url: str, next_of: Any) -> None:
    sid = await edge.start_session()
    status, body = await _call(edge, "POST", f"/sessions/{sid}/lap", ATHLETE, "athlete")
    assert status == 202, body
    assert body["session_id"] == sid and isinstance(body["at_ms"], int)
    # The linked coach may press Lap too (the athlete's hands are on the bars).
    status, body2 = await _call(edge, "POST", f"/sessions/{sid}/lap", COACH, "coach", {})
    assert status == 202, body2

    ws = await edge.ws(ATHLETE, "athlete")
    try:
        await ws.send_json({"type": "lap", "id": 7, "session_id": sid})
        ack = await next_of(ws, "ack")
        assert ack["op"] == "lap" and ack["ref"] == 7 and ack["session_id"] == sid
    finally:
        await ws.close()

    controls = await _controls(redis_url, sid)
    laps = [c for c in controls if c.action == "lap"]
    assert len(laps) == 3
    assert laps[0].at_ms == body["at_ms"]
    assert laps[1].payload == {"by": str(COACH)}


async def test_manual_lap_refusals_name_the_problem(edge: Any) -> None:
    sid = await edge.start_session()
    cases: list[tuple[UUID, str, Any, int, str]] = [
        # Another's session is answered as a missing one: ids cannot be probed.
        (OTHER_ATHLETE, "athlete", None, 404, ""),
        (OTHER_COACH, "coach", None, 404, ""),
        (ATHLETE, "athlete", {"at_ms": -1}, 422, "at_ms"),
        (ATHLETE, "athlete", {"at_ms": 1, "extra": 2}, 422, "extra"),
    ]
    for user, role, body, want, field in cases:
        status, problem = await _call(edge, "POST", f"/sessions/{sid}/lap", user, role, body)
        assert status == want, (user, body, problem)
        assert field in problem["detail"], problem
    status, problem = await _call(
        edge, "POST", "/sessions/00000000-0000-4000-8000-000000000000/lap", ATHLETE, "athlete"
    )
    assert status in (403, 404), problem
    status, problem = await _call(edge, "POST", "/sessions/nope/lap", ATHLETE, "athlete")
    assert status == 422 and "id" in problem["detail"]
    # A paused session has no running lap to close.
    assert (await _call(edge, "POST", f"/sessions/{sid}/pause", ATHLETE, "athlete"))[0] == 200
    status, problem = await _call(edge, "POST", f"/sessions/{sid}/lap", ATHLETE, "athlete")
    assert status == 409 and "paused" in problem["detail"]
