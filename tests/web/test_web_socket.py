"""The WebSocket over a real loopback socket: auth, subscriptions, fan-out, bad input
and limits. Live events are appended to ``live`` directly with pipeline.streams."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from pipeline.constants import LIVE_TOPIC
from pipeline.records import session_key
from pipeline.settings import load_settings
from pipeline.transport.streams import append, partition_for_key
from tests.ids import uid
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

ATHLETE, COACH, OTHER_COACH, OTHER_ATHLETE = uid(1), uid(2), uid(3), uid(4)
SECRET = "test-secret-of-at-least-32-bytes-for-hs256!"


async def publish(
    redis_url: str, session_id: str, events: list[dict[str, Any]], partitions: int = 4
) -> list[int]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        p = partition_for_key(session_key(session_id), partitions)
        now = int(time.time() * 1000)
        entries = [(session_key(session_id), json.dumps(e).encode(), None, now) for e in events]
        return await append(redis, LIVE_TOPIC, p, entries)
    finally:
        await redis.aclose()


def metrics_event(session_id: str, i: int, user_id: UUID = ATHLETE) -> dict[str, Any]:
    """A metrics_update as the agents publish it on ``live`` (their units, epoch time)."""
    return {
        "type": "metrics_update",
        "session_id": session_id,
        "user_id": str(user_id),
        "timestamp": time.time(),
        "ingest_ms": int(time.time() * 1000),
        "metrics": {"heart_rate": 120 + i, "pace": None, "distance": None, "cadence": None,
                    "seq": i},
    }  # fmt: skip


def alert_event(session_id: str, i: int, user_id: UUID = ATHLETE) -> dict[str, Any]:
    """An alert as the agents publish it on ``live``."""
    return {
        "type": "alert",
        "session_id": session_id,
        "user_id": str(user_id),
        "timestamp": time.time(),
        "alert": {"id": str(uuid.uuid4()), "rule": "hr_zone", "severity": "warning",
                  "message": f"HR high {i}", "metric": "heart_rate", "current": 180,
                  "threshold": 175},
    }  # fmt: skip


async def closed_with(ws: aiohttp.ClientWebSocketResponse, wait_s: float = 5.0) -> int | None:
    """Read until the server closes; its close code."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        msg = await ws.receive(timeout=deadline - time.monotonic())
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.ERROR,
        ):
            return ws.close_code
    raise AssertionError("the server did not close the socket")


async def test_subscribe_and_fan_out_with_offsets(edge: Any, redis_url: str, next_of: Any) -> None:
    sid = await edge.start_session()
    athlete = await edge.ws()
    coach = await edge.ws(COACH, "coach")
    await athlete.send_json({"type": "subscribe", "channel": f"live:session:{sid}", "id": 1})
    ack = await next_of(athlete, "ack")
    assert ack["ref"] == 1 and ack["channel"] == f"live:session:{sid}"
    p = partition_for_key(session_key(sid), 4)
    assert ack["cursor"] == [f"{p}:-1"]
    # the athlete's dashboard also listens on its user channel (presence comes there)
    await athlete.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}"})
    await next_of(athlete, "ack")
    await coach.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}"})
    ack = await next_of(coach, "ack")
    assert len(ack["cursor"]) == 4
    # the athlete is told the coach is watching (after its own arrival: "online")
    presence = await next_of(athlete, "presence")
    while presence["watcher_id"] == str(ATHLETE):
        presence = await next_of(athlete, "presence")
    assert presence["watching"] is True and presence["watcher_id"] == str(COACH)
    offsets = await publish(
        redis_url,
        sid,
        [metrics_event(sid, i) for i in range(3)] + [alert_event(sid, 0)],
    )
    for who in (athlete, coach):
        got = [await next_of(who, "metrics_update") for _ in range(3)]
        assert [g["offset"] for g in got] == [f"{p}:{o}" for o in offsets[:3]]
        alert = await next_of(who, "alert")
        assert alert["offset"] == f"{p}:{offsets[3]}"
        # The agents' epoch time and units, in the wire's: ISO 8601 with a zone.
        assert all(g["timestamp"].endswith("Z") for g in [*got, alert])
    assert got[0]["channels"] == [f"live:session:{sid}", f"live:user:{ATHLETE}"]
    await athlete.close()
    await coach.close()


async def test_auth_matrix_on_the_socket(edge: Any, settings: Any) -> None:
    sid = await edge.start_session()
    url = edge.url("/api/v1/live/ws")
    # expired token -> 4401
    claims = {"sub": str(ATHLETE), "role": "athlete", "exp": int(time.time()) - 3600}
    old = jwt.encode(claims, SECRET, algorithm="HS256")
    ws = await edge.session.ws_connect(url, headers={"Authorization": f"Bearer {old}"})
    assert await closed_with(ws) == 4401
    # forged signature -> 4401
    forged = jwt.encode({**claims, "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256")
    ws = await edge.session.ws_connect(url)
    await ws.send_json({"type": "auth", "token": forged})
    assert await closed_with(ws) == 4401
    # no auth frame in time -> 4401
    # unlinked coach subscribing to a session: the answer for one that does not exist,
    # so that refusals do not tell which session ids exist (issue 15 item 17)
    ws = await edge.ws(OTHER_COACH, "coach")
    answers = []
    for target in (sid, uuid.uuid4()):
        await ws.send_json({"type": "subscribe", "channel": f"live:session:{target}"})
        while (frame := await ws.receive_json(timeout=5))["type"] != "error":
            pass
        answers.append((frame["code"], frame["message"].replace(str(target), "<id>")))
    assert answers[0] == answers[1] == ("not_found", "no live session <id>"), answers
    await ws.close()
    # unlinked athlete channel -> 4403
    ws = await edge.ws(OTHER_ATHLETE, "athlete")
    await ws.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}"})
    assert await closed_with(ws) == 4403
    # first-frame auth works, and a refresh on the live socket too
    ws = await edge.session.ws_connect(url)
    await ws.send_json({"type": "auth", "token": edge.token(COACH, "coach")})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.send_json({"type": "auth", "token": edge.token(COACH, "coach", ttl_s=7200), "id": "r"})
    ack = await ws.receive_json(timeout=5)
    expires = dt.datetime.fromisoformat(ack["expires_at"]).timestamp()
    assert ack["op"] == "auth" and expires > time.time() + 3600
    await ws.send_json({"type": "auth", "token": edge.token(ATHLETE, "athlete")})
    assert await closed_with(ws) == 4403


async def test_auth_frame_timeout(edge_factory: Any) -> None:
    edge = await edge_factory(EdgeConfig(auth_timeout_s=0.3))
    ws = await edge.session.ws_connect(edge.url("/api/v1/live/ws"))
    assert await closed_with(ws) == 4401


async def test_jwks_rs256(
    tmp_path: Path, redis_url: str, database_url: str, users: None, next_of: Any
) -> None:
    from aiohttp.test_utils import TestServer

    from web.app import create_app

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    settings = load_settings(
        jwt_secret=SECRET,
        data_dir=tmp_path,
        jwt_jwks_file=jwks,
        live_partitions=4,
        samples_partitions=4,
    )
    server = TestServer(
        create_app(settings, redis_url=redis_url, database_url=database_url), host="127.0.0.1"
    )
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            claims = {"sub": str(ATHLETE), "role": "athlete", "exp": int(time.time()) + 60}
            good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
            ws = await session.ws_connect(
                server.make_url("/api/v1/live/ws"), headers={"Authorization": f"Bearer {good}"}
            )
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
            await ws.close()
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            bad = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})
            ws = await session.ws_connect(
                server.make_url("/api/v1/live/ws"), headers={"Authorization": f"Bearer {bad}"}
            )
            assert await closed_with(ws) == 4401
            async with session.get(
                server.make_url("/api/v1/live/sessions/1"),
                headers={"Authorization": f"Bearer {bad}"},
            ) as resp:
                assert resp.status == 401
    finally:
        await server.close()


async def test_bad_frames_get_error_events_and_the_socket_stays_open(
    edge: Any, next_of: Any
) -> None:
    ws = await edge.ws()
    await ws.send_str("{not json")
    assert (await next_of(ws, "error"))["code"] == "bad_json"
    await ws.send_json({"type": "teleport"})
    assert (await next_of(ws, "error"))["code"] == "unknown_type"
    await ws.send_json({"channel": "live:session:1"})
    assert (await next_of(ws, "error"))["code"] == "missing_field"
    await ws.send_json({"type": "message", "text": "hi"})
    err = await next_of(ws, "error")
    assert err["code"] == "missing_field" and "session_id" in err["message"]
    await ws.send_json({"type": "subscribe", "channel": "live:everything"})
    assert (await next_of(ws, "error"))["code"] == "invalid"
    await ws.send_json({"type": "resume", "cursors": {"live:user:1": "banana"}})
    assert (await next_of(ws, "error"))["code"] == "invalid"
    await ws.send_bytes(b"\x00\x01")
    assert (await next_of(ws, "error"))["code"] == "bad_frame"
    await ws.send_json({"type": "ping", "id": 7})
    assert (await next_of(ws, "pong"))["ref"] == 7
    assert not ws.closed
    await ws.close()


async def test_frame_too_big_closes_1009(edge: Any) -> None:
    ws = await edge.ws()
    # Just over the limit: the frame still fits the socket buffers, so the client
    # finishes sending before the edge, refusing it on its header, closes.
    await ws.send_str("x" * (EdgeConfig().max_frame_bytes + 1))
    assert await closed_with(ws, 10) == 1009


async def test_frame_limit_is_small_until_authenticated(edge: Any, next_of: Any) -> None:
    """Issue 15 item 1: before auth a message may be auth_frame_bytes (4 KiB), after it
    max_frame_bytes; compressed messages too (each inflates on its own)."""
    cfg = EdgeConfig()
    url = edge.url("/api/v1/live/ws")
    # Compressed (permessage-deflate negotiated): 64 KiB of JSON inflated from a few
    # hundred bytes is refused before auth...
    ws = await edge.session.ws_connect(url, compress=15)
    assert "client_no_context_takeover" in ws._response.headers["Sec-WebSocket-Extensions"]
    await ws.send_str('{"type":"auth","token":"' + "a" * 65536 + '"}')
    assert await closed_with(ws) == 1009
    # ...and so is a plain one just over the limit
    ws = await edge.session.ws_connect(url, compress=0)
    await ws.send_str("x" * (cfg.auth_frame_bytes + 1))
    assert await closed_with(ws) == 1009
    # after a first-frame auth the limit is the authenticated one, for compressed
    # messages too (several, so a lost deflate context would show)
    ws = await edge.session.ws_connect(url, compress=15)
    await ws.send_json({"type": "auth", "token": edge.token(ATHLETE, "athlete")})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    for i in range(3):
        # answered (an unknown type), not closed
        await ws.send_json({"type": "big", "id": i, "pad": "p" * (cfg.max_frame_bytes // 2)})
        error = await next_of(ws, "error")
        assert (error["code"], error["ref"]) == ("unknown_type", i)
    await ws.send_str("x" * (cfg.max_frame_bytes + 1))
    assert await closed_with(ws, 10) == 1009


async def test_flooding_closes_4429(edge: Any) -> None:
    ws = await edge.ws()
    started = time.monotonic()
    code = None
    for i in range(1000):
        try:
            await ws.send_json({"type": "ping", "id": i})
        except (ConnectionError, RuntimeError):
            break
        if ws.closed:
            break
        await asyncio.sleep(0.001)  # ~1,000 frames a second
    code = await closed_with(ws)
    assert code == 4429
    assert time.monotonic() - started < 5


async def test_connection_limit_per_user(edge_factory: Any) -> None:
    edge = await edge_factory(EdgeConfig(max_connections_per_user=2))
    a = await edge.ws()
    b = await edge.ws()
    c = await edge.session.ws_connect(edge.url("/api/v1/live/ws"), headers=edge.headers())
    assert await closed_with(c) == 4429
    await a.close()
    await b.close()


async def test_idle_timeout_4408(edge_factory: Any) -> None:
    edge = await edge_factory(EdgeConfig(heartbeat_s=0.2, idle_timeout_s=0.6))
    # autoping off: the client never answers the server's pings
    ws = await edge.session.ws_connect(
        edge.url("/api/v1/live/ws"), headers=edge.headers(), autoping=False
    )
    started = time.monotonic()
    code = None
    while time.monotonic() - started < 5:
        msg = await ws.receive(timeout=5)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            code = ws.close_code
            break
    assert code == 4408
    # a client that answers pings stays
    ws = await edge.ws()
    await asyncio.sleep(1.2)
    assert not ws.closed
    await ws.close()


async def test_heartbeat_pings_are_spread_over_the_period(edge_factory: Any) -> None:
    """Each socket is pinged once a period, not all of them in one burst of the loop."""
    edge = await edge_factory(EdgeConfig(heartbeat_s=1.0, idle_timeout_s=10.0))
    sockets = [
        await edge.session.ws_connect(
            edge.url("/api/v1/live/ws"), headers=edge.headers(), autoping=False
        )
        for _ in range(20)
    ]

    async def pings(ws: aiohttp.ClientWebSocketResponse) -> list[float]:
        times: list[float] = []
        while len(times) < 2:
            msg = await ws.receive(timeout=5)
            if msg.type == aiohttp.WSMsgType.PING:
                times.append(time.monotonic())
                await ws.pong(msg.data)
        return times

    got = await asyncio.gather(*[pings(ws) for ws in sockets])
    firsts = sorted(times[0] for times in got)
    assert firsts[-1] - firsts[0] > 0.4, f"first pings within {firsts[-1] - firsts[0]:.3f} s"
    for first, second in got:
        assert 0.7 < second - first < 1.3  # once a period each
    for ws in sockets:
        await ws.close()


async def test_device_metrics_frames_and_chat_over_the_socket(edge: Any, next_of: Any) -> None:
    sid = await edge.start_session()
    device = await edge.ws()
    coach = await edge.ws(COACH, "coach")
    await coach.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    await next_of(coach, "ack")
    await device.send_json(
        {
            "type": "metrics_update",
            "session_id": sid,
            "id": "m1",
            "metrics": {"heart_rate": 150, "pace": 5.0, "cadence": 88},
            "t": 1_780_000_000,
        }
    )
    ack = await next_of(device, "ack")
    assert ack["ref"] == "m1" and ack["accepted"] == 1
    await device.send_json(
        {
            "type": "metrics_update",
            "session_id": sid,
            "samples": [{"t": 1_780_000_001, "heart_rate": 999}],
        }
    )
    err = await next_of(device, "error")
    assert err["code"] == "invalid" and err["errors"][0]["field"].endswith("heart_rate")
    await coach.send_json(
        {
            "type": "message",
            "session_id": sid,
            "text": "hold it",
            "client_message_id": "x1",
            "id": 5,
        }
    )
    seen: dict[str, Any] = {}
    while len(seen) < 2:  # the live event may overtake the ack
        frame = await coach.receive_json(timeout=5)
        if frame["type"] in ("ack", "message"):
            seen[frame["type"]] = frame
    ack, msg = seen["ack"], seen["message"]
    assert ack["op"] == "message" and ack["created"] is True
    assert msg["message"]["text"] == "hold it" and ":" in msg["offset"]
    await device.send_json({"type": "typing", "session_id": sid, "typing": True})
    typing = await next_of(coach, "typing")
    assert typing["sender_id"] == str(ATHLETE)
    await device.send_json({"type": "read", "session_id": sid, "up_to_id": ack["message_id"]})
    receipt = await next_of(coach, "read_receipt")
    assert receipt["message_ids"] == [ack["message_id"]]
    await device.close()
    await coach.close()


async def test_slow_client_metrics_coalesced_alerts_kept(
    edge_factory: Any, redis_url: str, next_of: Any
) -> None:
    edge = await edge_factory(EdgeConfig(max_send_queue=50, coalesce_after=16))
    sid = await edge.start_session()
    ws = await edge.ws()
    await ws.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    await next_of(ws, "ack")
    conn = next(iter(edge.edge.connections))
    # Queue directly while the writer cannot run: 200 metrics and 5 alerts in one step.
    from web.fanout import build_event

    p = partition_for_key(session_key(sid), 4)
    for i in range(200):
        ev = build_event(
            p,
            1000 + i,
            json.dumps(alert_event(sid, i) if i % 40 == 0 else metrics_event(sid, i)).encode(),
        )
        assert ev is not None
        conn.deliver(ev)
    got: list[dict[str, Any]] = []
    while True:
        try:
            msg = await ws.receive(timeout=0.5)
        except TimeoutError:
            break
        got.append(json.loads(msg.data))
    kinds = [g["type"] for g in got]
    assert kinds.count("alert") == 5
    # a backlog of 16 frames is sent as is; beyond it the latest metrics win
    assert kinds.count("metrics_update") <= 17
    assert got[-1]["metrics"]["seq"] == 199
    assert not ws.closed
    await ws.close()


async def test_the_spec_device_example_verbatim_on_the_socket(
    edge: Any, redis_url: str, next_of: Any
) -> None:
    """The spec's device frame, its placeholder id replaced, sent as the spec writes it:
    acknowledged, and stored as 5:30 per km and 3.2 km."""
    from pipeline.constants import SAMPLES_TOPIC
    from pipeline.records import samples_topic_record
    from pipeline.transport.streams import read
    from tests.web.test_web_rest import SPEC_DEVICE_TEXT

    sid = await edge.start_session()
    device = await edge.ws()
    await device.send_str(SPEC_DEVICE_TEXT.replace('"uuid"', f'"{sid}"'))
    ack = await next_of(device, "ack")
    assert (ack["op"], ack["accepted"], ack["session_id"]) == ("metrics_update", 1, sid)
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await read(client, SAMPLES_TOPIC, ack["partition"], ack["samples_offset"] - 1)
    finally:
        await client.aclose()
    (sample,) = samples_topic_record.validate_json(entries[-1][1][1]).samples
    assert sample["t"] == 1_759_233_600.0
    assert sample["speed_m_s"] == pytest.approx(1000 / 330)
    assert sample["distance_m"] == pytest.approx(3200)
    # A pace of 0 has no speed: an error naming the field, and the socket stays open.
    bad = SPEC_DEVICE_TEXT.replace('"uuid"', f'"{sid}"').replace('"pace":5.5', '"pace":0')
    await device.send_str(bad)
    error = await next_of(device, "error")
    assert error["code"] == "invalid" and "metrics.pace" in error["message"], error
    assert not device.closed
    await device.close()
