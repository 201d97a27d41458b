"""Issue 15: the socket's limits over real loopback sockets: a client that stops reading
(item 4), PINGs against the rate limit (10), deeply nested JSON (11), token expiry on
every frame (12)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import psutil
import pytest
from ids import uid

from pipeline.settings import Settings, load_settings
from tests.web.rawws import client_frame, upgrade
from tests.web.test_web_socket import SECRET, closed_with, metrics_event, publish
from web.auth import mint_token
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

ATHLETE = uid(1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A 1 s leeway, so that expiry is tested in seconds, not the default 10."""
    return load_settings(
        jwt_secret=SECRET, data_dir=tmp_path, live_partitions=4, samples_partitions=4,
        jwt_leeway_s=1.0,
    )  # fmt: skip


async def _until(predicate: Any, wait_s: float) -> float:
    """Seconds until ``predicate()`` held; fails after ``wait_s``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > wait_s:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def _edge_socket_open(edge_port: int, client_port: int) -> bool:
    """Whether the edge still holds its end of the client's TCP connection."""
    return any(
        c.laddr and c.raddr and c.laddr.port == edge_port and c.raddr.port == client_port
        for c in psutil.Process().net_connections(kind="tcp")
    )


async def test_a_client_that_stops_reading_loses_its_socket_and_slot(
    edge_factory: Any, redis_url: str
) -> None:
    cfg = EdgeConfig(max_connections_per_user=1, max_send_queue=50, close_timeout_s=0.5)
    edge = await edge_factory(cfg)
    sid = await edge.start_session()
    port = edge.server.port
    # A tiny receive buffer, and a reader that stops taking bytes past 512.
    _reader, writer, _ = await upgrade(port, headers=edge.headers(), rcvbuf=4096, read_limit=256)
    subscribe = {"type": "subscribe", "channel": f"live:session:{sid}"}
    writer.write(client_frame(json.dumps(subscribe).encode()))
    await _until(lambda: any(c.subscriptions for c in edge.edge.connections), 5)
    (conn,) = edge.edge.connections
    # Batches smaller than the queue, so the edge writes them until the kernel's
    # buffers are full and bytes wait in the transport; then the queue overflows.
    pad = "x" * 8000
    deadline = time.monotonic() + 20
    i = 0
    while conn.close_code is None and time.monotonic() < deadline:
        batch = [{**metrics_event(sid, i + j), "pad": pad} for j in range(20)]
        await publish(redis_url, sid, batch)
        i += 20
        await asyncio.sleep(0.01)
    # marked too slow (4410) once its queue overflowed...
    print(f"{i} events of 8 KB published before the queue overflowed")
    assert conn.close_code == 4410
    # ...and then really gone within the close timeout: the edge's TCP socket (its fd
    # and the megabytes in its buffers), the handler task and the user's slot
    client_port = writer.get_extra_info("sockname")[1]
    gone_s = await _until(lambda: not _edge_socket_open(port, client_port), 5)
    assert not edge.edge.connections
    assert ATHLETE not in edge.edge.per_user
    print(f"socket closed {gone_s:.2f} s after 4410 (close_timeout_s {cfg.close_timeout_s})")
    assert gone_s < cfg.close_timeout_s + 1.0
    # the slot is free: the user's one allowed socket can be opened again
    ws = await edge.ws()
    await ws.close()
    writer.close()


async def test_control_frame_pings_count_against_the_rate_limit(
    edge_factory: Any, next_of: Any
) -> None:
    """Item 10: a flood of WebSocket PINGs (control frames) closes 4429 like data frames."""
    cfg = EdgeConfig(frame_rate=50.0, frame_burst=100.0)
    edge = await edge_factory(cfg)
    ws = await edge.ws(autoping=False)
    pongs = 0
    sent = 0
    started = time.monotonic()
    for sent in range(1, 5001):
        try:
            await ws.ping(b"x")
        except (ConnectionError, RuntimeError):
            break
        if sent % 100 == 0:
            await asyncio.sleep(0)
        if ws.closed or time.monotonic() - started > 5:
            break
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type == aiohttp.WSMsgType.PONG:
            pongs += 1
            continue
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        break
    print(f"{sent} PINGs sent, {pongs} PONGs back, then close {ws.close_code}")
    assert ws.close_code == 4429
    assert pongs <= cfg.frame_burst + cfg.frame_rate * (time.monotonic() - started) + 1


async def test_deeply_nested_json_is_an_error_event(edge: Any, next_of: Any) -> None:
    """Item 11: JSON nested 100,000 deep (200 KB) is answered, the socket stays open."""
    ws = await edge.ws()
    await ws.send_str("[" * 100_000 + "]" * 100_000)
    error = await next_of(ws, "error")
    assert error["code"] == "bad_json" and "nested too deeply" in error["message"]
    await ws.send_str('{"type": "x", "a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert (await next_of(ws, "error"))["code"] == "bad_json"
    await ws.send_json({"type": "ping", "id": 1})
    assert (await next_of(ws, "pong"))["ref"] == 1
    await ws.close()


async def test_an_expired_token_stops_working_at_the_next_frame(
    edge_factory: Any, settings: Any, next_of: Any
) -> None:
    """Item 12: expiry is checked on every client frame, not at the next heartbeat."""
    edge = await edge_factory(EdgeConfig(heartbeat_s=60, idle_timeout_s=120))
    leeway = settings.jwt_leeway_s
    token = mint_token(settings, user_id=ATHLETE, role="athlete", ttl_s=1)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    ws = await edge.session.ws_connect(
        edge.url("/api/v1/live/ws"), headers={"Authorization": f"Bearer {token}"}
    )
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.send_json({"type": "ping", "id": 1})
    assert (await next_of(ws, "pong"))["ref"] == 1
    await asyncio.sleep(max(0.0, exp + leeway - time.time()) + 0.2)
    await ws.send_json({"type": "ping", "id": 2})
    assert await closed_with(ws, 3) == 4401
    assert time.time() < exp + leeway + 2.0


async def test_a_trickled_request_body_is_cut(edge_factory: Any) -> None:
    """Item 13: an authenticated REST request whose body never finishes gets 408 and
    its connection closed after body_timeout_s (it was held forever)."""
    edge = await edge_factory(EdgeConfig(body_timeout_s=1.0))
    sid = await edge.start_session()
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.server.port)
    auth = edge.headers()["Authorization"]
    writer.write(
        (
            f"POST /api/v1/live/sessions/{sid}/update HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        + b'{"t": 1, "heart_rate"'
    )
    started = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    took = time.monotonic() - started
    rest = await asyncio.wait_for(reader.read(), 5)  # then EOF: the edge closed
    writer.close()
    print(f"answered {head.split(b' ', 2)[1].decode()} after {took:.2f} s, then closed")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive" in rest
    assert 0.9 < took < 3.0
