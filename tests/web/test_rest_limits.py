"""REST rate limits and size limits, over real HTTP (issue 15, item 9)."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from dataclasses import replace
from typing import Any
from uuid import UUID

import pytest

from tests.ids import uid
from tests.web.conftest import ATHLETE, COACH, EdgeFactory, Running
from web.edge import EdgeConfig
from web.ratelimit import is_loopback
from web.schemas import ALERT_SETTINGS_MAX_BYTES, METADATA_MAX_BYTES

pytestmark = pytest.mark.integration

API = "/api/v1/live"


async def _post(
    edge: Running, path: str, body: Any, user: UUID = ATHLETE, role: str = "athlete"
) -> tuple[int, dict[str, str], Any]:
    # A file-like body: aiohttp warns about large bytes sent in one piece.
    data = io.BytesIO(json.dumps(body).encode())
    headers = {**edge.headers(user, role), "Content-Type": "application/json"}  # type: ignore[arg-type]
    async with edge.session.post(edge.url(API + path), data=data, headers=headers) as r:
        payload = await r.json() if r.content_type.endswith("json") else await r.text()
        return r.status, dict(r.headers), payload


async def test_one_token_flooding_messages_is_held_to_its_rate(edge: Running) -> None:
    """The attack of the issue (2,000 messages in 2.3 s from one token), with defaults."""
    sid = await edge.start_session()
    cfg = edge.edge.config
    started = time.monotonic()
    results = []
    for batch in range(5):  # 150 messages, 30 at a time (under the per-address burst)
        results += await asyncio.gather(
            *(
                _post(edge, "/messages", {"session_id": sid, "text": f"spam {batch}-{i}"})
                for i in range(30)
            )
        )
    elapsed_s = time.monotonic() - started
    statuses = [status for status, _, _ in results]
    accepted = statuses.count(201)
    limited = [r for r in results if r[0] == 429]
    print(f"{len(results)} messages in {elapsed_s:.2f} s: {accepted} accepted, {len(limited)} 429")
    assert set(statuses) <= {201, 429}, set(statuses)
    # At most the burst (less the session start) plus what the rate refilled meanwhile.
    assert accepted <= cfg.rest_user_burst + cfg.rest_user_rate * elapsed_s + 1
    assert accepted >= cfg.rest_user_burst - 1
    status, headers, problem = limited[0]
    assert int(headers["Retry-After"]) >= 1
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["status"] == 429 and "per user" in problem["detail"]
    assert all("per user" in problem["detail"] for _, _, problem in limited)
    # Another user on the same edge (and address) is not held back by it.
    status, _, _ = await _post(edge, "/messages", {"session_id": sid, "text": "hi"}, COACH, "coach")
    assert status == 201


async def test_the_user_may_go_on_after_retry_after(edge_factory: EdgeFactory) -> None:
    edge = await edge_factory(
        EdgeConfig(rest_user_rate=2.0, rest_user_burst=3.0, rest_address_rate=0.0)
    )
    sid = await edge.start_session()  # one of the three
    statuses = []
    for i in range(4):
        status, headers, _ = await _post(edge, "/messages", {"session_id": sid, "text": str(i)})
        statuses.append(status)
    assert statuses == [201, 201, 429, 429]
    await asyncio.sleep(int(headers["Retry-After"]))
    status, _, _ = await _post(edge, "/messages", {"session_id": sid, "text": "later"})
    assert status == 201


async def test_one_address_is_held_to_its_rate_with_or_without_a_token(
    edge_factory: EdgeFactory,
) -> None:
    cfg = EdgeConfig(rest_address_rate=1.0, rest_address_burst=10.0, rest_user_rate=0.0)
    # By default a loopback peer (a local proxy speaking for everyone) is exempt ...
    lenient = await edge_factory(cfg)
    for _ in range(15):
        async with lenient.session.get(lenient.url(f"{API}/sessions/1")) as r:
            assert r.status == 401
    # ... here this test's loopback client stands for one remote address.
    edge = await edge_factory(replace(cfg, rest_address_exempt_loopback=False))
    statuses = []
    for i in range(15):
        # Bad tokens, no tokens, good tokens of different users: one address.
        headers = (
            {"Authorization": "Bearer nonsense"} if i % 3 == 0
            else {} if i % 3 == 1
            else edge.headers(uid(100 + i), "athlete")
        )  # fmt: skip
        async with edge.session.get(
            edge.url(f"{API}/sessions/{uuid.uuid4()}"), headers=headers
        ) as r:
            statuses.append(r.status)
            if r.status == 429:
                assert "per address" in (await r.json())["detail"]
                assert int(r.headers["Retry-After"]) >= 1
    assert 429 not in statuses[:10] and statuses[10:] == [429] * 5, statuses
    # Health, readiness and the dashboard are not API: never limited.
    for path in ("/healthz", "/dashboard", "/static/dashboard.js"):
        async with edge.session.get(edge.url(path)) as r:
            assert r.status == 200, path
    registry = edge.edge.metrics.registry
    limited = registry.get_sample_value("livecoach_http_rate_limited_total", {"scope": "address"})
    assert limited == 5


async def test_session_metadata_is_bounded(edge: Running) -> None:
    # The 1.9 MB of metadata (under the 2 MiB body limit): refused, naming it.
    huge = {"notes": "x" * 1_900_000}
    status, _, problem = await _post(edge, "/sessions/start", {"metadata": huge})
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "metadata"
    assert str(METADATA_MAX_BYTES) in problem["detail"]
    # Just over and just under the limit (multi-byte characters count as bytes).
    over = {"notes": "é" * (METADATA_MAX_BYTES // 2)}
    status, _, problem = await _post(edge, "/sessions/start", {"metadata": over})
    assert status == 422 and problem["errors"][0]["field"] == "metadata"
    under = {"notes": "x" * (METADATA_MAX_BYTES - 100)}
    assert len(json.dumps(under).encode()) <= METADATA_MAX_BYTES
    status, _, created = await _post(edge, "/sessions/start", {"metadata": under})
    assert status == 201, created


async def test_every_free_form_field_is_bounded(edge: Running) -> None:
    sid = await edge.start_session()
    cases: list[tuple[str, str, Any, str]] = [
        # text is message's old name: the error names message
        ("POST", "/messages", {"session_id": sid, "text": "x" * 4001}, "message"),
        ("POST", "/messages", {"session_id": sid, "message": "x" * 4001}, "message"),
        ("POST", "/messages", {"session_id": sid, "text": "x", "client_message_id": "c" * 65},
         "client_message_id"),
        ("POST", "/sessions/start", {"sport": "s" * 21}, "sport"),
        ("POST", f"/sessions/{sid}/pause", {"reason": "r" * 201}, "reason"),
        ("PUT", f"/athletes/{ATHLETE}/thresholds",
         {"alert_settings": {"heart_rate": {"x": "y" * ALERT_SETTINGS_MAX_BYTES}}},
         "alert_settings"),
    ]  # fmt: skip
    for method, path, body, field in cases:
        async with edge.session.request(
            method, edge.url(API + path), json=body, headers=edge.headers()
        ) as r:
            problem = await r.json()
            assert r.status == 422, (path, field, problem)
            assert problem["errors"][0]["field"] == field, (path, problem)
    # A body over the edge's limit is cut off before it is read: 413.
    big = b'{"text": "' + b"x" * (edge.edge.config.max_body_bytes + 10) + b'"}'
    async with edge.session.post(
        edge.url(f"{API}/messages"),
        data=io.BytesIO(big),
        headers={**edge.headers(), "Content-Type": "application/json"},
    ) as r:
        assert r.status == 413
        assert (await r.json())["status"] == 413


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("", True),
     ("10.0.0.1", False), ("203.0.113.9", False), ("2001:db8::1", False), ("junk", False)],
)  # fmt: skip
def test_which_peers_are_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
