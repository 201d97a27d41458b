"""Every REST endpoint, with junk in every id and in the body: never a 5xx while the
database is healthy, and every refusal a problem document (a real edge over a loopback
socket, real Redis and PostgreSQL)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.web.conftest import ATHLETE, COACH
from web.admin import ADMIN_ENDPOINTS
from web.edge import EdgeConfig
from web.endpoints import PREFIX
from web.group_rest import GROUP_ENDPOINTS
from web.replays import REPLAY_ENDPOINTS
from web.rest import ENDPOINTS

pytestmark = pytest.mark.integration

#: Path ids: integers (the old keys), junk, too long, a NUL, upper case, and a UUID
#: that names nothing.
JUNK_IDS = ["1", "0", "-1", "abc", "x" * 300, "%00", str(uuid.uuid4()).upper(),
            str(uuid.uuid4())]  # fmt: skip
#: Bodies: none, not JSON, the wrong JSON types, integer ids, junk values, a NUL.
JUNK_BODIES: list[bytes | None] = [
    None, b"", b"{", b"[]", b'"x"', b"null", b"{}", b'{"session_id": 1}',
    b'{"session_id": "nope", "text": "hi"}', b'{"athlete_id": 7, "training_session_id": 3}',
    b'{"t": "noon", "heart_rate": 1e308}', b'{"metrics": {"pace": -1}, "timestamp": "x"}',
    b'{"up_to_id": 5}', b'{"name": "a\\u0000b", "id": "' + str(uuid.uuid4()).encode() + b'"}',
    b'{"coach_id": "' + str(COACH).encode() + b'", "athlete_id": 12}',
    b"true", b"42", b"[" * 1000 + b"]" * 1000, b'{"a": ' * 1000 + b"1" + b"}" * 1000,
]  # fmt: skip
#: Query strings: numbers out of every range (issue 15 item 5), a NUL, junk.
JUNK_QUERIES = ["", "?from=1e20", "?from=inf", "?from=1e309", "?to=-1e309", "?limit=1e309",
                "?limit=-5", "?before=%00", "?athlete=%00&status=x", "?since=nan"]  # fmt: skip


def _paths(template: str, *real: str) -> list[str]:
    names = re.findall(r"{(\w+)}", template)
    if not names:
        return [template]
    return [re.sub(r"{\w+}", junk, template) for junk in (*JUNK_IDS, *real)]


async def test_no_junk_request_gets_a_5xx(edge_factory: Any, database_url: str) -> None:
    # REST limits out of the way: a 429 would hide what a handler does with the junk.
    unlimited = EdgeConfig(rest_user_rate=1e6, rest_user_burst=1e6,
                           rest_address_rate=1e6, rest_address_burst=1e6)  # fmt: skip
    edge = await edge_factory(unlimited)
    sid = str(await edge.start_session())  # so that queries reach a real session's handler
    seen: dict[int, int] = {}
    for ep in (*ENDPOINTS, *GROUP_ENDPOINTS, *ADMIN_ENDPOINTS, *REPLAY_ENDPOINTS):
        queries = JUNK_QUERIES if ep.method == "GET" else [""]
        for path in [p + q for p in _paths(ep.path, sid) for q in queries]:
            for body in JUNK_BODIES if ep.method in ("POST", "PUT") else [None]:
                for user, role in ((ATHLETE, "athlete"), (COACH, "coach")):
                    headers = {**edge.headers(user, role), "Content-Type": "application/json"}
                    async with edge.session.request(
                        ep.method, edge.url(PREFIX + path), data=body, headers=headers
                    ) as resp:
                        text = await resp.text()
                        seen[resp.status] = seen.get(resp.status, 0) + 1
                        where = f"{ep.method} {path} {body!r} as {role}"
                        assert resp.status < 500, f"{where}: {resp.status} {text[:300]}"
                        if resp.status >= 400:
                            assert resp.content_type == "application/problem+json", where
    # The sweep reached the handlers: refusals of several kinds, not one blanket answer.
    assert {400, 403, 404, 422} <= set(seen) and 429 not in seen, seen


async def test_no_junk_frame_gets_an_internal_error(edge: Any, next_of: Any) -> None:
    """The same on the socket: junk ids and values in every client frame type are an
    ``error`` naming what is wrong, never ``internal`` or ``unavailable``, and the
    socket stays open."""
    sid = await edge.start_session()
    ws = await edge.ws()
    frames: list[Any] = [
        {"type": "subscribe", "channel": "live:session:1"},
        {"type": "subscribe", "channel": f"live:session:{str(uuid.uuid4()).upper()}"},
        {"type": "subscribe", "channel": f"live:session:{uuid.uuid4()}"},
        {"type": "resume", "cursors": {"live:user:7": "0:1"}},
        {"type": "metrics_update", "session_id": 1, "metrics": {"heart_rate": 150}},
        {"type": "metrics_update", "session_id": sid, "metrics": {"pace": "fast"}},
        {"type": "metrics_update", "session_id": sid, "metrics": {"pace": 5.5},
         "timestamp": "yesterday"},
        {"type": "metrics_update", "session_id": str(uuid.uuid4()), "metrics": {"pace": 5.5}},
        {"type": "message", "session_id": "abc", "text": "hi"},
        {"type": "message", "session_id": str(uuid.uuid4()), "text": "hi"},
        {"type": "read", "session_id": sid, "up_to_id": 5},
        {"type": "read", "session_id": sid, "up_to_id": str(uuid.uuid4())},
        {"type": "ack_alert", "alert_id": "a1"},
        {"type": "ack_alert", "alert_id": str(uuid.uuid4())},
        {"type": "typing", "session_id": 3},
    ]  # fmt: skip
    for i, frame in enumerate(frames):
        await ws.send_json({**frame, "id": f"f{i}"})
        while True:  # the answer to this frame (others, such as presence, may come first)
            reply = await ws.receive_json(timeout=5)
            if reply.get("ref") == f"f{i}":
                break
        assert reply["type"] in ("error", "ack"), (frame, reply)
        if reply["type"] == "error":
            assert reply["code"] not in ("internal", "unavailable"), (frame, reply)
    assert not ws.closed
    await ws.send_json({"type": "ping", "id": "last"})
    assert (await next_of(ws, "pong"))["ref"] == "last"
    await ws.close()
