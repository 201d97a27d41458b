"""Acceptance of issue 13's identity part, playing the host product on real parts.

The host runs an RS256 identity provider (its JWKS served on loopback); livecoach's
edge is configured with its JWKS URL, issuer, audience and a maximum token lifetime.
An administrator (made with ``livecoach users add``) links a coach to an athlete over
the admin API; the athlete and the coach have never been seen by livecoach before
their first request. The athlete starts a session and posts a sample; the real live
worker computes the update and the coach sees it on the WebSocket. Tokens with the
wrong ``aud`` or ``iss``, or a lifetime over the maximum, get 401 with the reason.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp.test_utils import TestServer

from pipeline.settings import Settings, load_settings
from tests.test_agents_e2e import Workers
from tests.web.issuer import AUDIENCE, ISSUER, Issuer, host_user_id
from web.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API = "/api/v1/live"
MAX_LIFETIME_S = 3600
#: The spec's device example as the spec writes it ("uuid": its placeholder).
SPEC_DEVICE_TEXT = (
    '{"type":"metrics_update","session_id":"uuid","timestamp":"2025-09-30T12:00:00Z",'
    '"metrics":{"heart_rate":150,"pace":5.5,"distance":3.2,"cadence":180}}'
)
_ids = itertools.count(90_001)


def new_user_id() -> str:
    """A host user id never seen by livecoach: the ``sub`` the issuer mints."""
    return str(host_user_id(next(_ids)))


@pytest.fixture
def workers(redis_url: str, database_url: str) -> Iterator[Workers]:
    w = Workers(redis_url, database_url)  # 4 partitions, as the settings below
    w.start("live")
    yield w
    w.stop_all()


@pytest.fixture
def host_settings(tmp_path: Path, issuer: Issuer) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        live_partitions=4,
        samples_partitions=4,
        jwt_jwks_url=issuer.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms="RS256",
        jwt_max_lifetime_s=MAX_LIFETIME_S,
        jwt_role_claim="livecoach_role",
        jwt_name_claim="name",
    )


@pytest.fixture
async def edge_url(
    host_settings: Settings, redis_url: str, database_url: str
) -> AsyncIterator[str]:
    app = create_app(host_settings, redis_url=redis_url, database_url=database_url)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url(""))
    await server.close()


def _cli_add_admin(database_url: str, user_id: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env["LIVECOACH_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "users", "add", "--id", user_id,
         "--role", "admin", "--name", "Host Admin"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"added user {user_id} (admin)" in done.stdout


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_hosts_users_and_tokens_work_end_to_end(
    issuer: Issuer, edge_url: str, database_url: str, workers: Workers
) -> None:
    admin, athlete, coach = new_user_id(), new_user_id(), new_user_id()
    _cli_add_admin(database_url, admin)
    athlete_token = issuer.token(sub=athlete, name="Ath Lete", livecoach_role="athlete")
    coach_token = issuer.token(sub=coach, name="Co Ach", livecoach_role="coach")

    async with aiohttp.ClientSession(base_url=edge_url) as http:
        # The athlete, never seen before, starts a session: provisioned on first contact.
        async with http.post(f"{API}/sessions/start", json={}, headers=_auth(athlete_token)) as r:
            assert r.status == 201, await r.text()
            session = await r.json()
        assert str(session["user_id"]) == athlete
        # The coach's first contact provisions them as a coach (from the role claim) ...
        async with http.get(f"{API}/sessions/{session['id']}", headers=_auth(coach_token)) as r:
            # ... who may not see the athlete until linked: the session is "not found".
            assert r.status == 404
        link = {"coach_id": coach, "athlete_id": athlete}
        async with http.post(
            f"{API}/admin/links", json=link, headers=_auth(issuer.token(sub=admin))
        ) as r:
            assert r.status == 201, await r.text()

        ws = await http.ws_connect(f"{API}/ws", headers=_auth(coach_token))
        welcome = await ws.receive_json(timeout=5)
        assert (welcome["type"], str(welcome["user_id"]), welcome["role"]) == (
            "welcome", coach, "coach",
        )  # fmt: skip
        await ws.send_json({"type": "subscribe", "channel": f"live:session:{session['id']}"})
        assert (await ws.receive_json(timeout=5))["type"] == "ack"

        # The spec's device example, verbatim but for its placeholder id.
        spec = SPEC_DEVICE_TEXT.replace('"uuid"', f'"{session["id"]}"')
        async with http.post(
            f"{API}/sessions/{session['id']}/update",
            data=spec,
            headers={**_auth(athlete_token), "Content-Type": "application/json"},
        ) as r:
            assert r.status == 202, await r.text()
        deadline = time.monotonic() + 30
        while True:
            frame = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
            if frame["type"] == "metrics_update":
                break
        # ... seen by the coach in the spec's units: 5:30 per km is pace 5.5.
        assert frame["session_id"] == session["id"]
        assert frame["timestamp"] == "2025-09-30T12:00:00.000Z"
        assert frame["metrics"]["heart_rate"] == 150
        assert frame["metrics"]["cadence"] == 180
        assert frame["metrics"]["pace"] == pytest.approx(5.5, abs=0.01)
        assert frame["metrics"]["pace_s_per_km"] == pytest.approx(330, abs=0.5)
        await ws.close()

        # The host's tokens that livecoach must refuse: each a 401 saying why.
        now = int(time.time())
        refused: list[tuple[dict[str, Any], str]] = [
            ({"aud": "another-service"}, "wrong audience"),
            ({"iss": "https://elsewhere.example/"}, "wrong issuer"),
            ({"iat": now - 2 * MAX_LIFETIME_S, "exp": now + 60}, "exceeds the maximum"),
        ]
        for claims, reason in refused:
            token = issuer.token(sub=athlete, **claims)
            async with http.get(f"{API}/sessions/{session['id']}", headers=_auth(token)) as r:
                assert r.status == 401, claims
                assert reason in (await r.json())["detail"]

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id::text, role, name FROM users WHERE id::text = ANY(%s) ORDER BY id",
            ([admin, athlete, coach],),
        ).fetchall()
    assert rows == [
        (admin, "admin", "Host Admin"),
        (athlete, "athlete", "Ath Lete"),
        (coach, "coach", "Co Ach"),
    ]
