"""The edge's metrics count what they say (issue 16): HTTP requests by route template,
method and status; replayed events kept out of the live sample-to-socket latency."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC
from pipeline.records import session_key
from pipeline.transport.streams import append, partition_for_key
from tests.web.conftest import ATHLETE, Running

pytestmark = pytest.mark.integration

PARTITIONS = 4


def _count(edge: Running, name: str, **labels: str) -> float:
    return edge.edge.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_http_requests_are_counted_by_route_method_and_status(edge: Running) -> None:
    sid = await edge.start_session()
    samples = [{"t": time.time() - 10 + i, "heart_rate": 120.0} for i in range(3)]
    update = edge.url(f"/api/v1/live/sessions/{sid}/update")
    async with edge.session.post(update, headers=edge.headers(), json={"samples": samples}) as r:
        assert r.status == 202, await r.text()
    async with edge.session.post(update, headers=edge.headers(), json={"samples": "x"}) as r:
        assert r.status == 422
    async with edge.session.get(edge.url(f"/api/v1/live/sessions/{sid}")) as r:
        assert r.status == 401
    async with edge.session.get(edge.url("/no/such/path/12345")) as r:
        assert r.status == 404

    name = "livecoach_http_requests_total"
    start = {"route": "/api/v1/live/sessions/start", "method": "POST", "status": "201"}
    assert _count(edge, name, **start) == 1
    route = "/api/v1/live/sessions/{id}/update"
    assert _count(edge, name, route=route, method="POST", status="202") == 1
    assert _count(edge, name, route=route, method="POST", status="422") == 1
    get = "/api/v1/live/sessions/{id}"
    assert _count(edge, name, route=get, method="GET", status="401") == 1
    # An unknown path is one label value, not one per path.
    assert _count(edge, name, route="unmatched", method="GET", status="404") == 1
    assert _count(edge, "livecoach_http_request_seconds_count", route=route, method="POST") == 2


async def test_unknown_methods_share_one_label_value(edge: Running) -> None:
    """HTTP knows dozens of methods (llhttp passes WebDAV's on; aiohttp's Python parser any
    token): counted by name, each would be a label set for good."""
    for method in ("PROPFIND", "MKCOL", "REPORT"):
        async with edge.session.request(method, edge.url("/api/v1/live/sessions/start")) as r:
            assert r.status == 405, await r.text()
    name = "livecoach_http_requests_total"
    route = "unmatched"  # a 405 matched no route
    assert _count(edge, name, route=route, method="_OTHER", status="405") == 3
    for method in ("PROPFIND", "MKCOL", "REPORT"):
        assert _count(edge, name, route=route, method=method, status="405") == 0


def _event(session_id: str, seq: int, ingest_ms: int) -> bytes:
    return json.dumps({
        "type": "metrics_update", "session_id": session_id, "user_id": str(ATHLETE),
        "timestamp": time.time(), "ingest_ms": ingest_ms, "seq": seq,
        "metrics": {"heart_rate": 120, "pace": None, "distance": None, "cadence": None},
    }).encode()  # fmt: skip


async def _put(redis: aioredis.Redis, sid: str, seqs: range, ingest_ms: int) -> list[int]:
    key = session_key(sid)
    p = partition_for_key(key, PARTITIONS)
    now = int(time.time() * 1000)
    return await append(
        redis, LIVE_TOPIC, p, [(key, _event(sid, s, ingest_ms), None, now) for s in seqs]
    )


async def _frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    frames = []
    while len(frames) < count:
        frame = await ws.receive_json(timeout=5)
        if frame["type"] == "metrics_update":
            frames.append(frame)
    return frames


async def test_replayed_events_stay_out_of_the_live_latency_histogram(
    edge: Running, redis_url: str, next_of: Any
) -> None:
    sid = await edge.start_session()
    channel = f"live:session:{sid}"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        ws = await edge.ws()
        await ws.send_json({"type": "subscribe", "channel": channel})
        await next_of(ws, "ack")
        await _put(redis, sid, range(0, 3), int(time.time() * 1000))
        live = await _frames(ws, 3)
        await ws.close()
        latency_before = _count(edge, "livecoach_sample_to_socket_seconds_count")
        assert latency_before == 3
        assert _count(edge, "livecoach_sample_to_socket_seconds_bucket", le="1.0") == 3

        # Missed while away: an hour old when they are replayed.
        hour_ago = int(time.time() * 1000) - 3_600_000
        await _put(redis, sid, range(3, 8), hour_ago)
        ws = await edge.ws()
        await ws.send_json({"type": "resume", "cursors": {channel: live[-1]["offset"]}})
        replayed = await _frames(ws, 5)
        assert [f["seq"] for f in replayed] == [3, 4, 5, 6, 7]
        resumed = await next_of(ws, "resumed")
        assert resumed["recovered"] is True and resumed["replayed"] == 5
        # A live event after the resume counts as live again.
        await _put(redis, sid, range(8, 9), int(time.time() * 1000))
        await _frames(ws, 1)
        await ws.close()

        assert _count(edge, "livecoach_sample_to_socket_seconds_count") == latency_before + 1
        # Nothing an hour old inflated the live histogram ...
        assert _count(edge, "livecoach_sample_to_socket_seconds_bucket", le="1.0") == 4
        # ... the replayed events are counted apart, with their age.
        assert _count(edge, "livecoach_replayed_event_age_seconds_count") == 5
        assert _count(edge, "livecoach_replayed_event_age_seconds_bucket", le="900.0") == 0
    finally:
        await redis.aclose()
