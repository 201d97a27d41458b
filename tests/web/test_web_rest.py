"""REST over a real loopback socket, real Redis and PostgreSQL."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest
import redis.asyncio as aioredis

from pipeline.constants import SAMPLES_TOPIC
from pipeline.records import samples_topic_record
from pipeline.transport.streams import read
from tests.ids import uid

pytestmark = pytest.mark.integration

ATHLETE, COACH, OTHER_COACH, OTHER_ATHLETE = uid(1), uid(2), uid(3), uid(4)
T0 = 1_780_000_000.0
#: The spec's device example, as the spec writes it ("uuid": its placeholder).
SPEC_DEVICE_TEXT = (
    '{"type":"metrics_update","session_id":"uuid","timestamp":"2025-09-30T12:00:00Z",'
    '"metrics":{"heart_rate":150,"pace":5.5,"distance":3.2,"cadence":180}}'
)


async def _post(
    edge: Any,
    path: str,
    body: Any,
    user: UUID = ATHLETE,
    role: str = "athlete",
    raw: bytes | io.BytesIO | None = None,
) -> tuple[int, Any, str]:
    headers = edge.headers(user, role)
    kwargs: dict[str, Any] = (
        {"data": raw, "headers": {**headers, "Content-Type": "application/json"}}
        if raw is not None
        else {"json": body, "headers": headers}
    )
    async with edge.session.post(edge.url(f"/api/v1/live{path}"), **kwargs) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None), resp.content_type


async def test_start_update_and_the_samples_land_in_the_stream(edge: Any, redis_url: str) -> None:
    session_id = await edge.start_session()
    status, body, _ = await _post(
        edge, f"/sessions/{session_id}/update", {"t": T0, "heart_rate": 140, "power_w": 200}
    )
    assert status == 202, body
    assert body["accepted"] == 1
    status, body2, _ = await _post(
        edge,
        f"/sessions/{session_id}/update",
        {"samples": [{"t": T0 + 1, "heart_rate": 141}, {"t": T0 + 2, "heart_rate": 142}]},
    )
    assert status == 202 and body2["accepted"] == 2
    redis = aioredis.Redis.from_url(redis_url)
    try:
        entries = await read(redis, SAMPLES_TOPIC, body["partition"], 0)
    finally:
        await redis.aclose()
    records = [samples_topic_record.validate_json(value) for _, (_, value, _, _) in entries]
    kinds = [r.kind for r in records]
    assert kinds == ["control", "samples", "samples"]
    assert records[1].samples[0]["heart_rate"] == 140
    assert [s["heart_rate"] for s in records[2].samples] == [141, 142]  # type: ignore[union-attr]


async def test_lifecycle_and_get(edge: Any) -> None:
    sid = await edge.start_session()
    assert (await _post(edge, f"/sessions/{sid}/pause", None))[0] == 200
    status, body, ctype = await _post(edge, f"/sessions/{sid}/pause", None)
    assert status == 409 and ctype == "application/problem+json"
    assert (await _post(edge, f"/sessions/{sid}/resume", None))[0] == 200
    # the linked coach may stop it
    status, body, _ = await _post(edge, f"/sessions/{sid}/stop", None, COACH, "coach")
    assert status == 200 and body["status"] == "completed"
    async with edge.session.get(
        edge.url(f"/api/v1/live/sessions/{sid}"), headers=edge.headers(COACH, "coach")
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "completed"
    status, body, _ = await _post(edge, f"/sessions/{sid}/update", {"t": T0, "heart_rate": 120})
    assert status == 409


async def test_authorization_matrix(edge: Any) -> None:
    sid = await edge.start_session()
    url = edge.url(f"/api/v1/live/sessions/{sid}")
    async with edge.session.get(url) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
    async with edge.session.get(url, headers={"Authorization": "Bearer nonsense"}) as resp:
        assert resp.status == 401
    expired = edge.token(ATHLETE, "athlete", ttl_s=1)
    import jwt

    claims = jwt.decode(expired, options={"verify_signature": False})
    claims["exp"] -= 3600
    old = jwt.encode(claims, "test-secret-of-at-least-32-bytes-for-hs256!", algorithm="HS256")
    async with edge.session.get(url, headers={"Authorization": f"Bearer {old}"}) as resp:
        assert resp.status == 401
        assert "expired" in (await resp.json())["detail"]
    # Not theirs: the answer of a session that does not exist (ids cannot be probed).
    for user, role, expected in (
        (OTHER_COACH, "coach", 404),
        (OTHER_ATHLETE, "athlete", 404),
        (COACH, "coach", 200),
        (ATHLETE, "athlete", 200),
    ):
        async with edge.session.get(url, headers=edge.headers(user, role)) as resp:
            assert resp.status == expected, (user, role)
    # only the athlete posts samples
    status, _, _ = await _post(
        edge, f"/sessions/{sid}/update", {"t": T0, "heart_rate": 120}, COACH, "coach"
    )
    assert status == 403
    async with edge.session.get(
        edge.url(f"/api/v1/live/sessions/{uuid.uuid4()}"), headers=edge.headers()
    ) as resp:
        assert resp.status == 404
    for junk in ("999", "not-a-uuid", "x" * 200):
        async with edge.session.get(
            edge.url(f"/api/v1/live/sessions/{junk}"), headers=edge.headers()
        ) as resp:
            problem = await resp.json()
            assert resp.status == 422, problem
            assert problem["errors"][0]["field"] == "id"
            assert "expected id (a UUID)" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"t": T0, "heart_rate": 400}, "heart_rate"),
        ({"t": T0, "heart_rate": "fast"}, "heart_rate"),
        ({"heart_rate": 120}, "t"),
        ({"t": T0, "watts": 3}, "watts"),
        (
            {"samples": [{"t": T0, "heart_rate": 120}, {"t": T0, "power_w": -5}]},
            "samples[1].power_w",
        ),
        ({"samples": []}, "samples"),
    ],
)
async def test_bad_samples_are_422_naming_the_field(edge: Any, body: Any, field: str) -> None:
    sid = await edge.start_session()
    status, problem, ctype = await _post(edge, f"/sessions/{sid}/update", body)
    assert status == 422, problem
    assert ctype == "application/problem+json"
    assert problem["status"] == 422
    assert any(e["field"] == field for e in problem["errors"]), problem


async def test_a_session_plan_is_checked_at_start(edge: Any) -> None:
    plan = {"intervals": [{"name": "rep", "duration_s": 480, "power_w": {"low": 247, "high": 273}}]}
    status, body, _ = await _post(edge, "/sessions/start", {"metadata": {"plan": plan}})
    assert status == 201, body
    assert body["metadata"]["plan"] == plan
    bad = {"intervals": [{"name": "rep", "power_w": {"low": 247, "high": 273}}]}
    status, problem, ctype = await _post(edge, "/sessions/start", {"metadata": {"plan": bad}})
    assert status == 422 and ctype == "application/problem+json", problem
    assert any(
        e["field"] == "metadata" and "plan.intervals.0" in e["message"] for e in problem["errors"]
    ), problem
    zwo = {"zwo": "<workout_file><workout><Nope/></workout></workout_file>"}
    status, problem, _ = await _post(edge, "/sessions/start", {"metadata": {"plan": zwo}})
    assert status == 422 and "ZWO element 1" in json.dumps(problem), problem


async def test_malformed_json_oversize_body_and_bad_ids(edge: Any) -> None:
    sid = await edge.start_session()
    status, problem, ctype = await _post(edge, f"/sessions/{sid}/update", None, raw=b"{nope")
    assert status == 400 and ctype == "application/problem+json"
    assert "malformed JSON" in problem["detail"]
    big = b'{"t": 1780000000, "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    status, problem, ctype = await _post(edge, f"/sessions/{sid}/update", None, raw=io.BytesIO(big))
    assert status == 413 and ctype == "application/problem+json"
    status, problem, _ = await _post(edge, "/sessions/abc/update", {"t": T0})
    assert status in (404, 422)
    status, problem, _ = await _post(edge, "/sessions/0/pause", None)
    assert status == 422
    for resp_status, _, _ in [await _post(edge, "/sessions/start", None, raw=b"[1,2")]:
        assert resp_status == 400


async def test_thresholds_get_put_and_validation(edge: Any) -> None:
    url = edge.url(f"/api/v1/live/athletes/{ATHLETE}/thresholds")
    async with edge.session.get(url, headers=edge.headers()) as resp:
        assert resp.status == 200
        body = await resp.json()
        assert body["sound"] is True and "rules" in body["alert_settings"]
    good = {
        "hr_max": 192,
        "ftp_w": 280,
        "vibration": False,
        "alert_settings": {"rules": {"heart_rate": {"high_bpm": 175, "cooldown_s": 60}}},
    }
    async with edge.session.put(url, json=good, headers=edge.headers(COACH, "coach")) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["hr_max"] == 192 and body["vibration"] is False
        assert body["alert_settings"]["rules"]["heart_rate"]["high_bpm"] == 175
    bad_cases = [
        (
            {"alert_settings": {"rules": {"heart_rate": {"low_bpm": 170, "high_bpm": 150}}}},
            "alert_settings.rules.heart_rate.high_bpm",
        ),
        (
            {"alert_settings": {"rules": {"heart_rate": {"cooldown_s": -1}}}},
            "alert_settings.rules.heart_rate.cooldown_s",
        ),
        (
            {"alert_settings": {"rules": {"telepathy": {"enabled": True}}}},
            "alert_settings.rules.telepathy",
        ),
        ({"hr_rest": 200}, "hr_rest"),
        ({"hr_max": 20}, "hr_max"),
    ]
    for bad, field in bad_cases:
        async with edge.session.put(url, json=bad, headers=edge.headers()) as resp:
            assert resp.status == 422, (bad, await resp.text())
            problem = await resp.json()
            assert any(e["field"] == field for e in problem["errors"]), (field, problem)
    async with edge.session.get(url, headers=edge.headers(OTHER_COACH, "coach")) as resp:
        assert resp.status == 403


async def test_messages_alerts_and_metrics_history(edge: Any, database_url: str) -> None:
    sid = await edge.start_session()
    status, msg, _ = await _post(
        edge,
        "/messages",
        {"session_id": sid, "text": "easy now", "client_message_id": "c1"},
        COACH,
        "coach",
    )
    assert status == 201
    status, again, _ = await _post(
        edge,
        "/messages",
        {"session_id": sid, "text": "easy now", "client_message_id": "c1"},
        COACH,
        "coach",
    )
    assert status == 200 and again["id"] == msg["id"]
    status, _, _ = await _post(edge, "/messages", {"session_id": sid, "text": ""})
    assert status == 422
    async with edge.session.get(
        edge.url(f"/api/v1/live/messages/{sid}"), headers=edge.headers()
    ) as resp:
        messages = (await resp.json())["messages"]
        assert [m["message"] for m in messages] == ["easy now"]
        # From the coach to the athlete, as the spec's live_messages has it.
        assert (messages[0]["sender_id"], messages[0]["recipient_id"]) == (str(COACH), str(ATHLETE))
    status, read_body, _ = await _post(edge, f"/messages/{sid}/read", {"up_to_id": msg["id"]})
    assert status == 200 and read_body["read"] == [msg["id"]]

    alert = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO live_alerts (id, live_session_id, user_id, rule, metric, severity,"
            " message, current_value, threshold, triggered_at)"
            " VALUES (%s, %s, %s, 'heart_rate', 'heart_rate', 'warning', 'HR high', 180, 175,"
            " NOW())",
            (alert, sid, ATHLETE),
        )
        for i in range(120):
            conn.execute(
                "INSERT INTO live_metrics (live_session_id, timestamp, metric_type, value)"
                " VALUES (%s, to_timestamp(%s), 'heart_rate', %s)",
                (sid, T0 + i, 100 + i),
            )
    async with edge.session.get(
        edge.url(f"/api/v1/live/sessions/{sid}/alerts"), headers=edge.headers(COACH, "coach")
    ) as resp:
        alerts = (await resp.json())["alerts"]
        assert [a["id"] for a in alerts] == [str(alert)]
        assert alerts[0]["triggered_at"].endswith("Z")
    status, acked, _ = await _post(edge, f"/alerts/{alert}/ack", None, COACH, "coach")
    assert status == 200 and acked["acknowledged_by"] == str(COACH)
    status, _, _ = await _post(edge, f"/alerts/{alert}/ack", None, OTHER_COACH, "coach")
    assert status == 404  # not theirs: as if it did not exist
    status, problem, _ = await _post(edge, "/alerts/a1/ack", None, COACH, "coach")
    assert (status, problem["errors"][0]["field"]) == (422, "alert_id")
    async with edge.session.get(
        edge.url(f"/api/v1/live/sessions/{sid}/metrics?metric=heart_rate&max_points=12"),
        headers=edge.headers(),
    ) as resp:
        history = await resp.json()
        assert resp.status == 200, history
        assert history["bucket_s"] == 10
        assert len(history["points"]) == 12
        assert history["points"][0]["n"] == 10
        assert history["points"][0]["avg"] == pytest.approx(104.5)
    async with edge.session.get(
        edge.url(f"/api/v1/live/sessions/{sid}/metrics?max_points=lots"), headers=edge.headers()
    ) as resp:
        assert resp.status == 422


async def test_health_ready_metrics(edge: Any) -> None:
    async with edge.session.get(edge.url("/healthz")) as resp:
        assert resp.status == 200
    async with edge.session.get(edge.url("/readyz")) as resp:
        assert resp.status == 200, await resp.text()
    # /metrics is not public on the API port (tests/web/test_metrics_access.py).
    async with edge.session.get(edge.url("/metrics")) as resp:
        assert resp.status == 404


async def test_idempotent_retry_of_an_upload(edge: Any, redis_url: str) -> None:
    sid = await edge.start_session()
    url = edge.url(f"/api/v1/live/sessions/{sid}/update")
    headers = {**edge.headers(), "Idempotency-Key": "batch-1"}
    body = {"samples": [{"t": T0, "heart_rate": 120}, {"t": T0 + 1, "heart_rate": 121}]}
    async with edge.session.post(url, json=body, headers=headers) as resp:
        assert resp.status == 202
        first = await resp.json()
    async with edge.session.post(url, json=body, headers=headers) as resp:
        assert resp.status == 202
        assert resp.headers["Idempotent-Replayed"] == "true"
        assert await resp.json() == first
    redis = aioredis.Redis.from_url(redis_url)
    try:
        entries = await read(redis, SAMPLES_TOPIC, first["partition"], 0)
    finally:
        await redis.aclose()
    assert sum(b'"kind":"samples"' in value for _, (_, value, _, _) in entries) == 1


async def test_the_spec_device_example_is_accepted_verbatim(edge: Any, redis_url: str) -> None:
    """The spec's device message, its placeholder id replaced: pace 5.5 is 5:30 per km,
    distance 3.2 is km, the timestamp ISO 8601 with a zone."""
    sid = await edge.start_session()
    body = json.loads(SPEC_DEVICE_TEXT.replace('"uuid"', f'"{sid}"'))
    status, accepted, _ = await _post(edge, f"/sessions/{sid}/update", body)
    assert status == 202, accepted
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await read(client, SAMPLES_TOPIC, accepted["partition"], accepted["offset"] - 1)
    finally:
        await client.aclose()
    record = samples_topic_record.validate_json(entries[-1][1][1])
    (sample,) = record.samples
    assert sample["t"] == 1_759_233_600.0
    assert sample["speed_m_s"] == pytest.approx(1000 / 330)
    assert sample["distance_m"] == pytest.approx(3200)
    assert (sample["heart_rate"], sample["cadence"]) == (150, 180)
    # Another session's id in the body, or a pace that is no pace: a 422 naming the field.
    for bad, field in (
        ({**body, "session_id": str(uuid.uuid4())}, "session_id"),
        ({**body, "metrics": {**body["metrics"], "pace": 0}}, "metrics.pace"),
        ({**body, "metrics": {**body["metrics"], "pace": "fast"}}, "metrics.pace"),
        ({**body, "metrics": {**body["metrics"], "hr": 1}}, "metrics.hr"),
        ({**body, "timestamp": "noon"}, "t"),
    ):
        status, problem, _ = await _post(edge, f"/sessions/{sid}/update", bad)
        assert status == 422, (bad, problem)
        assert problem["errors"][0]["field"] == field, problem


async def test_list_an_athletes_sessions(edge: Any) -> None:
    first = await edge.start_session()
    second = await edge.start_session()
    status, _, _ = await _post(edge, f"/sessions/{first}/stop", None)
    assert status == 200

    async def listed(query: str, user: UUID = ATHLETE, role: str = "athlete") -> Any:
        async with edge.session.get(
            edge.url(f"/api/v1/live/sessions{query}"), headers=edge.headers(user, role)
        ) as resp:
            return resp.status, await resp.json()

    status, body = await listed(f"?athlete={ATHLETE}")
    assert status == 200, body
    assert [s["id"] for s in body["sessions"]] == [second, first]  # newest first
    assert all(s["started_at"].endswith("Z") for s in body["sessions"])
    assert (await listed("?status=completed"))[1]["sessions"][0]["id"] == first
    assert [s["id"] for s in (await listed("?status=active"))[1]["sessions"]] == [second]
    status, body = await listed("?limit=1")
    assert [s["id"] for s in body["sessions"]] == [second] and body["next_before"]
    # The linked coach sees them; another coach or athlete does not.
    status, body = await listed(f"?athlete={ATHLETE}", COACH, "coach")
    assert (status, len(body["sessions"])) == (200, 2)
    assert (await listed(f"?athlete={ATHLETE}", OTHER_COACH, "coach"))[0] == 403
    assert (await listed(f"?athlete={ATHLETE}", OTHER_ATHLETE))[0] == 403
    for query, field in (("?athlete=7", "athlete"), ("?status=done", "status")):
        status, problem = await listed(query)
        assert (status, problem["errors"][0]["field"]) == (422, field)


async def test_training_session_id_must_be_the_athletes(edge: Any, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        mine, theirs = (
            conn.execute(
                "INSERT INTO training_sessions (user_id, started_at) VALUES (%s, NOW())"
                " RETURNING id",
                (user,),
            ).fetchone()[0]  # type: ignore[index]
            for user in (ATHLETE, OTHER_ATHLETE)
        )
    start = "/sessions/start"
    status, problem, _ = await _post(edge, start, {"training_session_id": str(theirs)})
    assert (status, problem["errors"][0]["field"]) == (403, "training_session_id"), problem
    status, problem, _ = await _post(edge, start, {"training_session_id": str(uuid.uuid4())})
    assert (status, problem["errors"][0]["field"]) == (404, "training_session_id"), problem
    status, problem, _ = await _post(edge, start, {"training_session_id": "12"})
    assert (status, problem["errors"][0]["field"]) == (422, "training_session_id"), problem
    status, session, _ = await _post(edge, start, {"training_session_id": str(mine)})
    assert status == 201 and session["training_session_id"] == str(mine)
