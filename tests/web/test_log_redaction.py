"""No token reaches a log line (issue 15, item 8).

The first test runs ``livecoach web`` as an operator would (its own process, its own
logging set up by the CLI, aiohttp's access log on stderr), sends it requests that
carry tokens in every place a client puts one, and reads what the process printed.
The second checks an edge embedded in another program (logging not set up by us).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from pipeline.embedded import free_port
from pipeline.redaction import redact_tokens, redact_url
from pipeline.settings import load_settings
from tests.web.conftest import ATHLETE, SECRET, Running
from web.auth import mint_token

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _token() -> str:
    settings = load_settings(jwt_secret=SECRET)
    return mint_token(settings, user_id=ATHLETE, role="athlete", ttl_s=600)


async def _wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the edge exited at start-up"
            try:
                async with http.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the edge did not come up")


def _start_edge(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "web", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


async def test_the_cli_edge_logs_no_token(redis_url: str, database_url: str) -> None:
    token = _token()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env.update(
        LIVECOACH_REDIS_URL=redis_url,
        LIVECOACH_DATABASE_URL=database_url,
        LIVECOACH_JWT_SECRET=SECRET,
        LIVECOACH_LOG_LEVEL="INFO",
    )
    proc = _start_edge(port, env)
    try:
        await _wait_up(base, proc)
        async with aiohttp.ClientSession() as http:
            # The dashboard moves a query token to the fragment, which no server sees.
            async with http.get(
                f"{base}/dashboard?athletes=1&token={token}", allow_redirects=False
            ) as resp:
                assert resp.status == 303
                location = resp.headers["Location"]
                assert location == f"/dashboard?athletes=1#token={token}"
            for path in (
                f"/api/v1/live/sessions/1?token={token}",
                f"/api/v1/live/ws?access_token={token}&token={token}",
                f"/nowhere?x=1&token={token}",
            ):
                async with http.get(f"{base}{path}") as resp:
                    await resp.read()
            async with http.get(
                f"{base}/api/v1/live/sessions/1", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                await resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    access = [line for line in output.splitlines() if "aiohttp.access" in line]
    assert len(access) >= 5, output  # the requests were logged...
    assert "token=***" in output  # ...with the token masked
    signature = token.rsplit(".", 1)[-1]
    assert signature not in output, "a token (its signature) was logged"


async def test_an_embedded_edge_logs_no_token(
    edge: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """The access log of an edge in someone else's program (pytest's logging here)."""
    token = edge.token(ATHLETE, "athlete")
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with edge.session.get(edge.url(f"/api/v1/live/sessions/1?token={token}")) as r:
            await r.read()
        async with edge.session.get(
            edge.url(f"/dashboard?token={token}"), allow_redirects=False
        ) as r:
            assert r.status == 303
        # Let the access log of the last request be written.
        async with edge.session.get(edge.url("/healthz")) as r:
            await r.read()
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "aiohttp.access"]
    assert any("/api/v1/live/sessions/1?token=***" in line for line in lines), lines
    assert all(token.rsplit(".", 1)[-1] not in line for line in lines), lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('GET /x?token=abc.def&y=1 HTTP/1.1"', 'GET /x?token=***&y=1 HTTP/1.1"'),
        ("GET /x?a=1&access_token=zzz", "GET /x?a=1&access_token=***"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
        ("{'Authorization': 'Basic dXNlcjpwdw=='}", "{'Authorization': 'Basic ***'}"),
        ('"-" "Bearer abcdef"', '"-" "Bearer ***"'),
        ("redis://:pw@127.0.0.1:1/0 down", "redis://:***@127.0.0.1:1/0 down"),
        ("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", "***"),
        ("GET /api/v1/live/sessions/1 HTTP/1.1", "GET /api/v1/live/sessions/1 HTTP/1.1"),
    ],
)
def test_redact_tokens(text: str, expected: str) -> None:
    assert redact_tokens(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://postgres:s3cret@h:5/db", "postgresql://postgres:***@h:5/db"),
        ("postgresql://h/db?password=s3cret&sslmode=require", "postgresql://h/db?password=***&sslmode=require"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)  # fmt: skip
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_a_faust_worker_logs_no_password() -> None:
    """Faust's worker replaces the root logger's handlers; records are masked anyway."""
    script = (
        "import logging\n"
        "from pipeline import redaction\n"
        "from mode.utils.logging import setup_logging\n"
        "redaction.install_record_factory()\n"
        "setup_logging(loglevel='INFO')  # what faust.Worker does at start\n"
        "logging.getLogger('faust.transport').info('connecting to %s', "
        "'redis://:s3cretpw-0123456789@127.0.0.1:6379/0')\n"
        "logging.getLogger('x').warning('GET /x?token=eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "redis://:***@127.0.0.1:6379/0" in output and "token=***" in output, output
    assert "s3cretpw" not in output and "c2lnbmF0dXJl" not in output, output
