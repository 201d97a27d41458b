"""Issue 15, items 20 and 21: the edge during outages of its backing services. A Redis
server of the test's own is stopped (item 20): requests fail fast, with 503 and
``Retry-After``. A PostgreSQL of its own is frozen with SIGSTOP (item 21): /readyz still
answers within its 2 s timeout."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestServer
from ids import uid

from pipeline.embedded import EmbeddedPostgres, EmbeddedRedis
from pipeline.settings import Settings
from tests.conftest import make_data_dir
from web.app import create_app
from web.auth import mint_token

pytestmark = pytest.mark.integration

ATHLETE = uid(1)


async def test_a_redis_outage_fails_requests_fast_with_retry_after(
    redis_server_factory: Callable[..., EmbeddedRedis],
    database_url: str,
    users: None,
    settings: Settings,
) -> None:
    redis = redis_server_factory()
    server = TestServer(
        create_app(settings, redis_url=redis.url, database_url=database_url), host="127.0.0.1"
    )
    await server.start_server()
    headers = {"Authorization": f"Bearer {mint_token(settings, user_id=ATHLETE, role='athlete')}"}
    try:
        async with aiohttp.ClientSession() as http:
            url = lambda path: str(server.make_url(path))  # noqa: E731
            async with http.post(
                url("/api/v1/live/sessions/start"), headers=headers, json={}
            ) as resp:
                assert resp.status == 201, await resp.text()
                sid = (await resp.json())["id"]
            sample = {"t": time.time(), "heart_rate": 140}
            async with http.post(
                url(f"/api/v1/live/sessions/{sid}/update"), headers=headers, json=sample
            ) as resp:
                assert resp.status == 202, await resp.text()

            ws = await http.ws_connect(url("/api/v1/live/ws"), headers=headers)
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"

            redis.stop()
            # a socket's frame: an error event with retry_after_s, the socket stays open
            started = time.monotonic()
            await ws.send_json({"type": "metrics_update", "session_id": sid, "id": 9,
                                "metrics": {"heart_rate": 140}})  # fmt: skip
            while (error := await ws.receive_json(timeout=5))["type"] != "error":
                pass
            ws_took = time.monotonic() - started
            assert (error["code"], error["ref"], error["retry_after_s"]) == ("unavailable", 9, 2)
            assert not ws.closed
            await ws.close()
            timings: list[tuple[str, int, float, str | None]] = []
            requests: list[tuple[str, str, Any]] = [
                ("POST", f"/api/v1/live/sessions/{sid}/update", sample),
                ("POST", f"/api/v1/live/sessions/{sid}/update", sample),
                ("GET", "/readyz", None),
                ("POST", f"/api/v1/live/sessions/{sid}/update", sample),
            ]
            for method, path, body in requests:
                started = time.monotonic()
                async with http.request(method, url(path), headers=headers, json=body) as resp:
                    await resp.read()
                    timings.append(
                        (path, resp.status, time.monotonic() - started,
                         resp.headers.get("Retry-After"))
                    )  # fmt: skip
    finally:
        await server.close()
    print(f"socket frame: error unavailable in {ws_took * 1000:.0f} ms")
    assert ws_took < 1.0
    for path, status, took, retry_after in timings:
        print(f"{path}: {status} in {took * 1000:.0f} ms, Retry-After {retry_after}")
    assert all(status == 503 for _, status, _, _ in timings)
    assert all(retry_after is not None and int(retry_after) > 0 for *_, retry_after in timings)
    assert max(took for _, _, took, _ in timings) < 1.0


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    data_dir = make_data_dir()
    server = EmbeddedPostgres(data_dir, durable=False)
    server.start()
    yield server
    _signal_tree(server, signal.SIGCONT)
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def _signal_tree(server: EmbeddedPostgres, sig: signal.Signals) -> None:
    """The postmaster and every backend (each connection has its own process)."""
    assert server.pid is not None
    root = psutil.Process(server.pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


async def test_readyz_answers_in_time_while_postgres_is_frozen(
    own_postgres: EmbeddedPostgres, redis_url: str, settings: Settings
) -> None:
    """Item 21: PostgreSQL stopped with SIGSTOP (not down: connections hang)."""
    server = TestServer(
        create_app(settings, redis_url=redis_url, database_url=own_postgres.url),
        host="127.0.0.1",
    )
    await server.start_server()
    results: list[tuple[int, float, dict[str, Any]]] = []
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/readyz")) as resp:
                assert resp.status == 200, await resp.text()
            _signal_tree(own_postgres, signal.SIGSTOP)
            try:
                for _ in range(3):
                    started = time.monotonic()
                    async with http.get(server.make_url("/readyz")) as resp:
                        body = await resp.json()
                        results.append((resp.status, time.monotonic() - started, body))
            finally:
                _signal_tree(own_postgres, signal.SIGCONT)
            for _ in range(50):  # and ready again once it runs
                async with http.get(server.make_url("/readyz")) as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.2)
            assert resp.status == 200
    finally:
        await server.close()
    for status, took, body in results:
        print(f"/readyz while frozen: {status} in {took * 1000:.0f} ms: {body['checks']}")
    assert all(status == 503 for status, _, _ in results)
    assert all(body["checks"]["postgresql"] != "ok" for _, _, body in results)
    assert max(took for _, took, _ in results) < 2.5
