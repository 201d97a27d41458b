"""The bench's lean device client against a real aiohttp server over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.client import Poster, PostError
from pipeline.embedded import free_port

Seen = list[tuple[str, bytes, int]]


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, Seen]]:
    seen: Seen = []  # (authorization, body, client port)

    async def update(request: web.Request) -> web.Response:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((request.headers.get("Authorization", ""), body, peer[1] if peer else 0))
        if body == b"close":
            return web.Response(status=202, headers={"Connection": "close"})
        return web.json_response({"ok": True}, status=422 if body == b"bad" else 202)

    app = web.Application()
    app.router.add_post("/update", update)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv, seen
    await srv.close()


async def test_posts_reuse_one_connection_and_report_the_status(
    server: tuple[TestServer, Seen],
) -> None:
    srv, seen = server
    poster = Poster("127.0.0.1", srv.port, "/update", {"Authorization": "Bearer x"})
    assert await poster.post(b'{"a": 1}') == 202
    assert await poster.post(b"bad") == 422
    assert await poster.post(b'{"a": 2}') == 202
    assert [(auth, body) for auth, body, _ in seen] == [
        ("Bearer x", b'{"a": 1}'),
        ("Bearer x", b"bad"),
        ("Bearer x", b'{"a": 2}'),
    ]
    assert len({port for *_, port in seen}) == 1  # keep-alive: one connection
    # A server that closes after answering: the next post opens a new connection.
    assert await poster.post(b"close") == 202
    assert await poster.post(b'{"a": 3}') == 202
    assert seen[-1][2] != seen[0][2]
    poster.close()


async def test_no_server_is_a_post_error() -> None:
    poster = Poster("127.0.0.1", free_port(), "/update", {})
    with pytest.raises(PostError, match="cannot connect"):
        await poster.post(b"{}")
