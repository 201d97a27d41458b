"""Property-based fuzzing of the edge: every REST operation of the OpenAPI document
(Schemathesis, valid and invalid requests) and every client frame of the protocol's JSON
Schema (hypothesis-jsonschema, then mutated and garbage frames), against a real edge on
a loopback port over real Redis and PostgreSQL.

Checked for every request and frame: no 5xx; a refusal is a problem document; nothing
half-written (a refused request or frame leaves the database and the streams as they
were); a socket is only ever closed with a documented close code (docs/web.md); and the
edge still answers afterwards.

Bounded for CI: ``LIVECOACH_FUZZ_EXAMPLES`` examples per REST operation (default 12)
and 15 times as many socket frames (about a minute in all). Run longer locally with,
for example, ``LIVECOACH_FUZZ_EXAMPLES=500 .venv/bin/pytest tests/web/test_fuzz.py``.
A failure prints the example and a ``@seed(...)`` that replays it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import psycopg
import pytest
import redis
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC
from pipeline.models import client_frame
from pipeline.settings import Settings
from pipeline.transport.keys import stream_key
from tests.web.conftest import ATHLETE, COACH
from web.app import create_app
from web.auth import Role, mint_token
from web.edge import EdgeConfig
from web.openapi import build_openapi
from web.protocol import CLOSE_INTERNAL

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("LIVECOACH_FUZZ_EXAMPLES", "12"))
FRAMES = EXAMPLES * 15
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)  # fmt: skip
#: Rate limits out of the way: a 429 or a 4429 would hide what a handler does.
UNLIMITED = EdgeConfig(
    rest_user_rate=1e6, rest_user_burst=1e6, rest_address_rate=1e6, rest_address_burst=1e6,
    frame_rate=1e6, frame_burst=1e6, user_frame_rate=1e6, user_frame_burst=1e6,
)  # fmt: skip
PARTITIONS = 4
DOCS_WEB = Path(__file__).resolve().parents[2] / "docs" / "web.md"


def documented_close_codes() -> set[int]:
    """The close codes of docs/web.md's table, and 1000 (a normal close)."""
    text = DOCS_WEB.read_text(encoding="utf-8")
    table = text[text.index("### Close codes") :].split("\n\n")[1]
    return {1000} | {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, re.M)}


@dataclass
class ThreadedEdge:
    """An edge serving from a thread of its own (its own event loop), so that the
    synchronous fuzzers (Schemathesis calls with ``requests``) can drive it."""

    url: str
    loop: asyncio.AbstractEventLoop
    settings: Settings
    redis_url: str
    database_url: str

    def run(self, coro: Any, timeout_s: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    def headers(self, user: UUID = ATHLETE, role: Role = "athlete") -> dict[str, str]:
        token = mint_token(self.settings, user_id=user, role=role, ttl_s=3600)
        return {"Authorization": f"Bearer {token}"}

    def written(self) -> tuple[int, ...]:
        """What a request could have written: rows of the tables a client writes
        through the edge, and entries of the two streams the edge appends to."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM live_training_sessions),"
                " (SELECT count(*) FROM live_training_sessions WHERE status <> 'active'),"
                " (SELECT count(*) FROM live_messages),"
                " (SELECT count(*) FROM live_messages WHERE read_at IS NOT NULL),"
                " (SELECT count(*) FROM live_alerts WHERE acknowledged_at IS NOT NULL),"
                " (SELECT count(*) FROM athlete_profiles)"
            ).fetchone()
        assert row is not None
        client = redis.Redis.from_url(self.redis_url)
        try:
            streams = [
                client.xlen(stream_key(topic, p))
                for topic in (SAMPLES_TOPIC, LIVE_TOPIC)
                for p in range(PARTITIONS)
            ]
        finally:
            client.close()
        return (*row, *streams)

    def start_session(self) -> str:
        resp = requests.post(f"{self.url}/api/v1/live/sessions/start", json={},
                             headers=self.headers(), timeout=10)  # fmt: skip
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def still_answers(self) -> None:
        assert requests.get(f"{self.url}/healthz", timeout=10).status_code == 200
        self.start_session()


@pytest.fixture
def threaded_edge(
    settings: Settings, redis_url: str, database_url: str, users: None
) -> Iterator[ThreadedEdge]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-edge", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        app = create_app(settings, redis_url=redis_url, database_url=database_url,
                         config=UNLIMITED)  # fmt: skip
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        return runner, server.sockets[0].getsockname()[1]

    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    edge = ThreadedEdge(f"http://127.0.0.1:{port}", loop, settings, redis_url, database_url)
    try:
        yield edge
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- REST -------------------------------------------------------------------------------

SCHEMA = schemathesis.openapi.from_dict(build_openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]


def _strategy(operation: Any) -> st.SearchStrategy[Any]:
    return st.one_of(
        operation.as_strategy(),
        operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
    )


@pytest.mark.timeout(120 + EXAMPLES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_no_request_gets_a_5xx_or_writes_half(threaded_edge: ThreadedEdge, operation: Any) -> None:
    edge = threaded_edge
    session_id = edge.start_session()
    http = requests.Session()  # closed below: an unclosed one warns when collected

    @FUZZ
    @given(case=_strategy(operation), data=st.data())
    def fuzz(case: Any, data: st.DataObject) -> None:
        # A real session or athlete in the path half of the time, so that requests get
        # past the lookup into the handlers.
        for name in list(case.path_parameters or {}):
            if data.draw(st.booleans(), label=f"real {name}"):
                real = str(ATHLETE) if "thresholds" in operation.path else session_id
                case.path_parameters[name] = real
        who = data.draw(st.sampled_from(["athlete", "coach", "generated"]), label="caller")
        headers = dict(case.headers or {})
        if who != "generated":
            headers.update(edge.headers(ATHLETE, "athlete") if who == "athlete"
                           else edge.headers(COACH, "coach"))  # fmt: skip
        case.headers = headers
        before = edge.written()
        response = case.call(base_url=edge.url, session=http, timeout=30)
        where = f"{case.method} {case.formatted_path} -> {response.status_code}"
        assert response.status_code < 500, f"{where}: {response.text[:500]}"
        if response.status_code >= 400:
            ctype = _header(response.headers, "content-type")
            assert ctype.startswith("application/problem+json"), f"{where}: {ctype!r}"
            assert edge.written() == before, f"{where}: a refused request wrote something"

    try:
        fuzz()
    finally:
        http.close()
    edge.still_answers()


def _header(headers: Any, name: str) -> str:
    """A header of Schemathesis' response (lower-case names, lists of values)."""
    for key, value in headers.items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return ""


# --- WebSocket --------------------------------------------------------------------------

_CLIENT_SCHEMA = client_frame.json_schema(ref_template="#/$defs/{model}")
#: Every client frame the protocol describes, valid against its JSON Schema.
VALID_FRAMES = from_schema(_CLIENT_SCHEMA)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> Any:
    """A valid frame with one field dropped, replaced by any JSON, or one added."""
    value: Any = draw(VALID_FRAMES)  # always an object: every ClientFrame is one
    frame = dict(value)
    how = draw(st.sampled_from(["drop", "replace", "add"]))
    keys = sorted(frame)
    if how == "drop" and keys:
        frame.pop(draw(st.sampled_from(keys)))
    elif how == "replace" and keys:
        frame[draw(st.sampled_from(keys))] = draw(_JSON)
    else:
        frame[draw(st.text(max_size=10))] = draw(_JSON)
    return frame


#: What is sent: text of a (valid, mutated, arbitrary) JSON value, any text, or bytes.
FRAMES_TO_SEND = st.one_of(
    VALID_FRAMES.map(lambda f: ("text", json.dumps(f))),
    mutated_frames().map(lambda f: ("text", json.dumps(f))),
    _JSON.map(lambda v: ("text", json.dumps(v))),
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
    st.integers(1, 2000).map(lambda n: ("text", "[" * n + "]" * n)),
)


class Socket:
    """One authenticated socket of the athlete, reopened after a (checked) close."""

    def __init__(self, edge: ThreadedEdge) -> None:
        self.edge = edge
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.probes = 0

    async def open(self) -> aiohttp.ClientWebSocketResponse:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        if self.ws is None or self.ws.closed:
            self.ws = await self.session.ws_connect(
                f"{self.edge.url}/api/v1/live/ws", headers=self.edge.headers()
            )
            welcome = await self.ws.receive_json(timeout=10)
            assert welcome["type"] == "welcome", welcome
        return self.ws

    async def exchange(self, kind: str, payload: Any) -> tuple[list[dict[str, Any]], int | None]:
        """Send a frame, then a ping as a probe; the frames received up to the probe's
        pong, and the close code if the edge closed the socket instead."""
        ws = await self.open()
        await (ws.send_bytes(payload) if kind == "bytes" else ws.send_str(payload))
        self.probes += 1
        probe = f"probe-{self.probes}"
        if not ws.closed:
            await ws.send_str(json.dumps({"type": "ping", "id": probe}))
        received: list[dict[str, Any]] = []
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED):  # fmt: skip
                return received, ws.close_code
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
            frame = json.loads(msg.data)
            if frame.get("type") == "pong" and frame.get("ref") == probe:
                return received, None
            received.append(frame)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


@pytest.mark.parametrize("frame_id", [True, False, 1.5, None, [1], {"a": 1}])
async def test_a_frame_id_outside_the_schema_is_not_echoed(
    edge: Any, next_of: Any, frame_id: Any
) -> None:
    """Found by the fuzzer: an invalid frame's ``"id": true`` came back as ``"ref":
    true``, which the protocol's schema refuses (a ref is a string or an integer)."""
    ws = await edge.ws()
    await ws.send_json({"type": "subscribe", "id": frame_id, "channel": "live:session:1"})
    error = await next_of(ws, "error")
    assert "ref" not in error, error
    await ws.send_json({"type": "subscribe", "id": 7, "channel": "live:session:1"})
    assert (await next_of(ws, "error"))["ref"] == 7
    await ws.close()


@pytest.mark.timeout(120 + 2 * EXAMPLES)
def test_no_frame_closes_a_socket_undocumented_or_writes_half(
    threaded_edge: ThreadedEdge,
) -> None:
    edge = threaded_edge
    session_id = edge.start_session()
    documented = documented_close_codes() - {CLOSE_INTERNAL}  # 1011: a failing service
    socket = Socket(edge)

    def aimed(frame: tuple[str, Any], real: bool) -> tuple[str, Any]:
        """A generated session id replaced by the athlete's real session (half the time)."""
        kind, payload = frame
        if real and kind == "text":
            payload = re.sub(r'"session_id": "[0-9a-f-]{36}"', f'"session_id": "{session_id}"',
                             payload)  # fmt: skip
        return kind, payload

    @settings(FUZZ, max_examples=FRAMES)
    @given(frame=FRAMES_TO_SEND, real=st.booleans())
    def fuzz(frame: tuple[str, Any], real: bool) -> None:
        kind, payload = aimed(frame, real)
        before = edge.written()
        received, close_code = edge.run(socket.exchange(kind, payload))
        where = f"{kind} {str(payload)[:300]!r} -> {received[:3]}, close {close_code}"
        assert close_code is None or close_code in documented, where
        errors = [f for f in received if f.get("type") == "error"]
        assert not [e for e in errors if e.get("code") in ("internal", "unavailable")], where
        if errors or close_code is not None:
            assert edge.written() == before, f"{where}: a refused frame wrote something"

    try:
        fuzz()
    finally:
        edge.run(socket.close())
    edge.still_answers()
