"""Fixtures of the edge tests: a real edge on a loopback port over real Redis and
PostgreSQL, users and coach links in the database, and tokens."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import psycopg
import pytest
from aiohttp.test_utils import TestServer

from pipeline.models import server_event
from pipeline.settings import Settings, load_settings
from tests.ids import uid
from tests.test_agents_e2e import Workers
from tests.web.issuer import Issuer, serve_issuer
from web.app import create_app
from web.auth import Role, mint_token
from web.edge import EDGE, Edge, EdgeConfig

SECRET = "test-secret-of-at-least-32-bytes-for-hs256!"

ATHLETE = uid(1)
COACH = uid(2)
OTHER_COACH = uid(3)
OTHER_ATHLETE = uid(4)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        jwt_secret=SECRET, data_dir=tmp_path, live_partitions=4, samples_partitions=4
    )


@pytest.fixture
def users(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for user, role in (
            (ATHLETE, "athlete"),
            (COACH, "coach"),
            (OTHER_COACH, "coach"),
            (OTHER_ATHLETE, "athlete"),
        ):
            conn.execute(
                "INSERT INTO users (id, email, name, role) VALUES (%s, %s, %s, %s)",
                (user, f"u{user.int}@example.com", f"user {user.int}", role),
            )
        conn.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)", (COACH, ATHLETE)
        )


@dataclass
class Running:
    server: TestServer
    session: aiohttp.ClientSession
    settings: Settings

    @property
    def edge(self) -> Edge:
        return self.server.app[EDGE]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def token(self, user_id: UUID, role: Role, ttl_s: int = 3600) -> str:
        return mint_token(self.settings, user_id=user_id, role=role, ttl_s=ttl_s)

    def headers(self, user_id: UUID = ATHLETE, role: Role = "athlete") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, role)}"}

    async def ws(
        self, user_id: UUID = ATHLETE, role: Role = "athlete", **kwargs: Any
    ) -> aiohttp.ClientWebSocketResponse:
        ws = await self.session.ws_connect(
            self.url("/api/v1/live/ws"), headers=self.headers(user_id, role), **kwargs
        )
        welcome = await ws.receive_json(timeout=5)
        assert welcome["type"] == "welcome", welcome
        return ws

    async def start_session(self, user_id: UUID = ATHLETE) -> str:
        """A new session of ``user_id``; its id as text (as frames and paths carry it)."""
        async with self.session.post(
            self.url("/api/v1/live/sessions/start"), headers=self.headers(user_id), json={}
        ) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["id"])


EdgeFactory = Callable[..., Any]


@pytest.fixture
async def edge_factory(
    settings: Settings, redis_url: str, database_url: str, users: None
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def make(config: EdgeConfig | None = None, **overrides: Any) -> Running:
        """An edge; ``overrides`` replace fields of its Settings (``durable_ack_ms=50``)."""
        edge_settings = settings.model_copy(update=overrides) if overrides else settings
        app = create_app(
            edge_settings,
            redis_url=redis_url,
            database_url=database_url,
            config=config or EdgeConfig(),
        )
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession()
        running = Running(server, session, edge_settings)
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.session.close()
        try:
            await asyncio.wait_for(asyncio.shield(running.server.close()), 8)
        except TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack()
            raise


@pytest.fixture
async def edge(edge_factory: Callable[..., Any]) -> Running:
    return await edge_factory()  # type: ignore[no-any-return]


async def _next_of(
    ws: aiohttp.ClientWebSocketResponse, kind: str, wait_s: float = 5.0
) -> dict[str, Any]:
    """The next frame of type ``kind`` (skipping others such as presence)."""
    while True:
        msg = await ws.receive(timeout=wait_s)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        frame = json.loads(msg.data)
        if "offset" not in frame:
            # What the edge itself writes must match the protocol models (live events
            # are the agents' and the tests' own).
            server_event.validate_python(frame)
        if frame["type"] == kind:
            return frame  # type: ignore[no-any-return]


@pytest.fixture
def next_of() -> Callable[..., Any]:
    return _next_of


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    """The host's identity provider: RS256 tokens, a JWKS URL on loopback."""
    async with serve_issuer() as state:
        yield state


@pytest.fixture
def workers(redis_url: str, database_url: str) -> Iterator[Workers]:
    """The live and store workers, real processes on the test's servers (4 partitions,
    as the edge settings here)."""
    w = Workers(redis_url, database_url)
    w.start("live")
    w.start("store")
    yield w
    w.stop_all()


async def frames_until(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[dict[str, Any]], bool], wait_s: float
) -> list[dict[str, Any]]:
    """Frames received on ``ws`` up to the first for which ``done`` is true."""
    frames = []
    deadline = time.monotonic() + wait_s
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[f['type'] for f in frames][-20:]}"
        frame = await ws.receive_json(timeout=remaining)
        frames.append(frame)
        if done(frame):
            return frames


#: Sample times of the full-path tests: an hour ago, so none is in the future however
#: the test runs.
SAMPLES_T0 = time.time() - 3600


async def post_samples(
    edge: Running, sid: str, first: int, last: int, hr: float = 150.0
) -> aiohttp.ClientResponse:
    """Post the athlete's samples ``first`` to ``last`` (1 Hz from SAMPLES_T0)."""
    samples = [{"session_id": sid, "t": SAMPLES_T0 + i, "heart_rate": hr, "power_w": 210.0}
               for i in range(first, last)]  # fmt: skip
    async with edge.session.post(
        edge.url(f"/api/v1/live/sessions/{sid}/update"),
        headers=edge.headers(ATHLETE, "athlete"),
        json={"samples": samples},
    ) as resp:
        await resp.read()
        return resp


async def call(
    edge: Any, method: str, path: str, user: UUID, role: str, body: Any = None
) -> tuple[int, Any]:
    """One API call as ``user``: (status, JSON body or None)."""
    async with edge.session.request(
        method, edge.url(f"/api/v1/live{path}"), headers=edge.headers(user, role), json=body
    ) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


async def coached_group(edge: Any, body: dict[str, Any], athletes: Any) -> tuple[str, Any]:
    """COACH creates a group (``body``), invites ``athletes`` and follows its channel:
    (group id, the coach's socket)."""
    status, group = await call(edge, "POST", "/groups", COACH, "coach", body)
    assert status == 201, group
    gid = str(group["id"])
    for athlete in athletes:
        status, _ = await call(edge, "POST", f"/groups/{gid}/members", COACH, "coach",
                               {"athlete_id": str(athlete)})  # fmt: skip
        assert status == 201
    coach = await edge.ws(COACH, "coach")
    await coach.send_json({"type": "subscribe", "channel": f"live:group:{gid}"})
    return gid, coach
