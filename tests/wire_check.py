"""Every frame the test suite receives from livecoach over a WebSocket, checked against
the checked-in schema/protocol.schema.json with a real JSON Schema validator.

:func:`install` wraps ``aiohttp.ClientWebSocketResponse.receive`` for the whole test
session, so that no test helper can forget it: each text frame of a socket connected to
livecoach's ``/api/v1/live/ws`` is validated (with format checks: ``uuid``,
``date-time``) as a ``ServerEvent`` when the test ends. A frame that does not validate
is recorded, not raised (the code under test may be the one reading the socket, and
must not be made to fail in a way it would not in production); :func:`take_violations`
hands them to the autouse fixture of tests/conftest.py, which fails the test that saw
them.

Browser tests read frames in the page; they register them with :func:`check` directly.
"""

from __future__ import annotations

import collections
import functools
import json
from typing import Any

import aiohttp
import jsonschema

from schema import PROTOCOL_SCHEMA

WS_PATH = "/api/v1/live/ws"

_schema: dict[str, Any] = json.loads(PROTOCOL_SCHEMA.read_text(encoding="utf-8"))
_server = jsonschema.Draft202012Validator(
    {**{k: v for k, v in _schema.items() if k != "anyOf"}, "$ref": "#/$defs/ServerEvent"},
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
)
#: One validator per event type, by the schema's discriminator: the same verdict as the
#: ``oneOf`` (each branch fixes ``type``), without trying a frame against all twelve, so
#: that checking stays cheap beside the load tests whose latencies it shares a loop with.
_by_type = {
    name: jsonschema.Draft202012Validator(
        {**{k: v for k, v in _schema.items() if k != "anyOf"}, "$ref": ref},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    for name, ref in _schema["$defs"]["ServerEvent"]["discriminator"]["mapping"].items()
}
_violations: list[str] = []
#: Text frames received and not checked yet: they are checked when the test ends
#: (:func:`take_violations`), not while it runs, so that validating does not take the
#: event loop from what a test measures (a load test receives thousands of frames).
_received: collections.deque[str] = collections.deque()


def _check_text(data: str) -> None:
    try:
        frame = json.loads(data)
    except ValueError:
        _violations.append(f"not JSON: {data[:200]!r}")
    else:
        check(frame)


#: How many frames were checked (a test of this module checks it moves).
checked = [0]


def errors_of(frame: Any) -> list[str]:
    """Why ``frame`` is not a valid server event (empty: it is)."""
    kind = frame.get("type") if isinstance(frame, dict) else None
    validator = _by_type.get(kind, _server) if isinstance(kind, str) else _server
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<frame>'}: {e.message}"
        for e in validator.iter_errors(frame)
    ]


def check(frame: Any, where: str = "") -> None:
    """Validate one received frame; record it if it is not a valid server event."""
    checked[0] += 1
    errors = errors_of(frame)
    if errors:
        _violations.append(f"{where}{json.dumps(frame)[:400]}: {'; '.join(errors[:3])}")


def take_violations() -> list[str]:
    """Check the frames received since the last call; what was wrong with them."""
    while _received:
        _check_text(_received.popleft())
    out = list(_violations)
    _violations.clear()
    return out


def _is_livecoach(ws: aiohttp.ClientWebSocketResponse) -> bool:
    response = getattr(ws, "_response", None)
    url = getattr(response, "url", None)
    return url is not None and url.path == WS_PATH


def install() -> None:
    """Wrap ``receive`` once (idempotent)."""
    original = aiohttp.ClientWebSocketResponse.receive
    if getattr(original, "_wire_checked", False):
        return

    @functools.wraps(original)
    async def receive(
        self: aiohttp.ClientWebSocketResponse,
        timeout: float | None = None,  # noqa: ASYNC109 (aiohttp's own signature)
    ) -> aiohttp.WSMessage:
        msg = await original(self, timeout)
        if msg.type == aiohttp.WSMsgType.TEXT and _is_livecoach(self):
            _received.append(msg.data)
        return msg

    receive._wire_checked = True  # type: ignore[attr-defined]
    aiohttp.ClientWebSocketResponse.receive = receive  # type: ignore[method-assign]
