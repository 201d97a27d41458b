"""Issue 15: the socket's limits over real loopback sockets: a client that stops reading
(item 4), PINGs against the rate limit (10), deeply nested JSON (11), token expiry on
every frame (12)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psutil
import pytest

from tests.web.rawws import client_frame, upgrade
from tests.web.test_web_socket import metrics_event, publish
from web.app import EdgeConfig

pytestmark = pytest.mark.integration

ATHLETE = 1


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
