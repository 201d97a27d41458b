"""``/metrics`` is not public on the API port (issue 15, item 17).

Without ``LIVECOACH_METRICS_TOKEN`` the API port answers 404 for it; with one, only its
bearer reads it. ``LIVECOACH_METRICS_PORT`` serves the metrics on a listener of their
own (loopback by default), which the first test starts the way ``livecoach web`` does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from pipeline.embedded import free_port
from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from tests.web.conftest import SECRET, Running
from web.app import create_app
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "metrics-token-of-some-length-0123456789"


async def _status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, await r.text()


async def test_the_api_port_hides_metrics_without_a_token(edge: Running) -> None:
    status, body = await _status(edge.url("/metrics"))
    assert status == 404
    assert "livecoach_" not in body
    # A bearer token of a user does not open it either.
    status, body = await _status(edge.url("/metrics"), edge.headers())
    assert status == 404 and "livecoach_" not in body


async def test_the_metrics_token_opens_it(
    redis_url: str, database_url: str, users: None, tmp_path: Path
) -> None:
    from aiohttp.test_utils import TestServer

    settings = load_settings(
        jwt_secret=SECRET, data_dir=tmp_path, metrics_token=METRICS_TOKEN,
        live_partitions=4, samples_partitions=4,
    )  # fmt: skip
    app = create_app(settings, redis_url=redis_url, database_url=database_url, config=EdgeConfig())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/metrics"))
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
            status, body = await _status(url, headers)
            assert status == 401 and "livecoach_" not in body, headers
        status, body = await _status(url, {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200
        assert "livecoach_ws_connections" in body
        assert "livecoach_sample_to_socket_seconds_bucket" in body
    finally:
        await server.close()


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(metrics_token="short")
    assert caught.value.variable == "LIVECOACH_METRICS_TOKEN"


def _start_edge(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "web", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def test_livecoach_web_serves_metrics_on_their_own_loopback_port(
    redis_url: str, database_url: str
) -> None:
    api_port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env.update(
        LIVECOACH_REDIS_URL=redis_url,
        LIVECOACH_DATABASE_URL=database_url,
        LIVECOACH_JWT_SECRET=SECRET,
        LIVECOACH_METRICS_PORT=str(metrics_port),
    )
    proc = _start_edge(env, api_port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the edge exited at start-up"
            try:
                status, body = await _status(f"http://127.0.0.1:{metrics_port}/metrics")
                break
            except aiohttp.ClientError:
                assert time.monotonic() < deadline, "no metrics listener after 60 s"
                await asyncio.sleep(0.2)
        assert status == 200 and "livecoach_ws_connections" in body
        # Only /metrics there; and still not on the API port.
        status, _ = await _status(f"http://127.0.0.1:{metrics_port}/api/v1/live/sessions/1")
        assert status == 404
        status, body = await _status(f"http://127.0.0.1:{api_port}/metrics")
        assert status == 404 and "livecoach_" not in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
