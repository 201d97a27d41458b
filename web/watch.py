"""``livecoach watch SESSION --token T``: print a live session in the terminal.

A small protocol client: subscribes to ``live:session:{id}``, prints one line per event,
and when the connection drops it reconnects and resumes from its cursor, so the
terminal shows every event once (or says that it got a snapshot instead).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, TextIO

import aiohttp

from web.protocol import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED

_FATAL = {CLOSE_UNAUTHORIZED: "bad or expired token", CLOSE_FORBIDDEN: "not allowed"}


def describe(frame: dict[str, Any]) -> str:
    """One terminal line for a server event."""
    kind = frame.get("type", "?")
    stamp = time.strftime("%H:%M:%S")
    where = f" @{frame['offset']}" if "offset" in frame else ""
    if kind == "metrics_update":
        m = frame.get("metrics") or {}
        parts = []
        for name, unit in (
            ("heart_rate", "bpm"),
            ("power", "W"),
            ("pace", "s/km"),
            ("cadence", "rpm"),
            ("distance", "m"),
        ):
            value = m.get(name)
            if isinstance(value, int | float):
                parts.append(f"{name}={value:.0f}{unit}")
        for name in ("hr_zone", "power_zone", "state"):
            if m.get(name) is not None:
                parts.append(f"{name}={m[name]}")
        return f"{stamp} metrics {' '.join(parts)}{where}"
    if kind == "alert":
        a = frame.get("alert") or {}
        return (
            f"{stamp} ALERT [{a.get('severity')}] {a.get('message')} "
            f"({a.get('metric')}={a.get('current')} vs {a.get('threshold')}){where}"
        )
    if kind == "message":
        msg = frame.get("message") or {}
        return f"{stamp} message from {msg.get('from')}: {msg.get('text')}{where}"
    if kind == "resumed":
        how = "nothing lost" if frame.get("recovered") else "gap too old: snapshot"
        return f"{stamp} resumed ({how}; {frame.get('replayed', 0)} replayed)"
    if kind == "error":
        return f"{stamp} error {frame.get('code')}: {frame.get('message')}"
    rest = {k: v for k, v in frame.items() if k not in ("type", "channel", "channels")}
    return f"{stamp} {kind} {json.dumps(rest, default=str)[:160]}"


async def watch(
    base_url: str,
    session_id: int,
    token: str,
    *,
    out: TextIO = sys.stdout,
    max_events: int | None = None,
    reconnect_s: float = 1.0,
) -> int:
    """Print events until interrupted (or ``max_events`` live events); exit status."""
    channel = f"live:session:{session_id}"
    cursor: dict[str, str] = {}
    seen = 0
    url = base_url.rstrip("/") + "/api/v1/live/ws"
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.ws_connect(
                    url, headers={"Authorization": f"Bearer {token}"}, heartbeat=None
                ) as ws:
                    if cursor:
                        await ws.send_json(
                            {"type": "resume", "cursors": {channel: list(cursor.values())}}
                        )
                    else:
                        await ws.send_json({"type": "subscribe", "channel": channel})
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        frame = json.loads(msg.data)
                        if frame.get("type") in ("ack", "resumed") and frame.get("cursor"):
                            for c in frame["cursor"]:
                                cursor.setdefault(c.split(":")[0], c)
                            if frame["type"] == "resumed":
                                cursor.update({c.split(":")[0]: c for c in frame["cursor"]})
                        if "offset" in frame:
                            cursor[frame["offset"].split(":")[0]] = frame["offset"]
                            seen += 1
                        if frame.get("type") not in ("welcome", "ack", "pong"):
                            print(describe(frame), file=out, flush=True)
                        if max_events is not None and seen >= max_events:
                            return 0
                    code = ws.close_code
                    if code in _FATAL:
                        print(f"closed {code}: {_FATAL[code]}", file=sys.stderr)
                        return 1
            except aiohttp.ClientError as exc:
                print(f"connection failed ({exc}); retrying", file=sys.stderr)
            await asyncio.sleep(reconnect_s)


def run_watch(base_url: str, session_id: int, token: str) -> int:
    try:
        return asyncio.run(watch(base_url, session_id, token))
    except KeyboardInterrupt:
        return 0
