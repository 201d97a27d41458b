"""``livecoach watch``: follow a live session (or an athlete) in the terminal.

A real WebSocket client of the edge: it authenticates with the token, subscribes to
``live:session:{id}`` (or ``live:user:{id}``), prints one line per event, and after a
dropped connection reconnects with backoff and resumes from the last cursor it saw,
so nothing is missed: its position is one offset per partition of ``live`` (from the
subscribe reply, then from each event), and an alert id is printed once.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any, TextIO
from uuid import UUID

import aiohttp

from pipeline.constants import session_channel, user_channel
from web.protocol import format_cursor, parse_cursor


def _num(value: Any, fmt: str = "{:.0f}") -> str:
    return fmt.format(value) if isinstance(value, int | float) else "-"


def _pace(s_per_km: Any) -> str:
    if not isinstance(s_per_km, int | float):
        return "-"
    minutes, seconds = divmod(round(s_per_km), 60)
    return f"{minutes}:{seconds:02d}/km"


#: Characters shown escaped rather than sent to the terminal: Unicode's control
#: characters (C0 with ESC and newlines, DEL, C1 with CSI) and the bidirectional
#: overrides that make text display in another order than it reads.
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``).

    Chat text, alert messages and error messages come from other people: printed raw,
    an escape sequence could move the cursor, recolour or retitle the terminal, or
    forge earlier lines; a newline could forge a whole event line.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() and ch not in _BIDI else ch.encode("unicode_escape").decode()
        for ch in text
    )


def format_event(event: dict[str, Any]) -> str | None:
    """One terminal line for an event, or None for events not worth a line."""
    line = _format(event)
    return printable(line) if line is not None else None


def _format(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    sid = event.get("session_id", "?")
    if kind == "metrics_update":
        m = event.get("metrics", {})
        return (
            f"[{sid}] {_num(m.get('elapsed_s'), '{:>6.0f}s')}  HR {_num(m.get('heart_rate'))}"
            f" ({m.get('hr_zone') or '-'})  P {_num(m.get('power'))} W"
            f" ({m.get('power_zone') or '-'})  pace {_pace(m.get('pace_s_per_km'))}"
            f"  dist {_num(m.get('distance'), '{:.2f}')} km  NP {_num(m.get('np'))}"
            f"  W'bal {_num(m.get('w_prime_bal_pct'), '{:.0f}%')}"
        )
    if kind == "alert":
        a = event.get("alert", {})
        return f"[{sid}] ALERT {str(a.get('severity', '')).upper()}: {a.get('message')}"
    if kind == "session_event":
        return f"[{sid}] session {event.get('event')} (state {event.get('state', '-')})"
    if kind == "message":
        msg = event.get("message", {})
        return f"[{sid}] message from {msg.get('from')}: {msg.get('text')}"
    if kind == "error":
        return f"error: {event.get('code')}: {event.get('message')}"
    if kind == "resumed":
        return f"resumed (recovered: {event.get('recovered')})"
    return None


class _Position:
    """Where the watcher is in a channel: per partition of ``live``, the last offset
    seen (a user channel spans every partition; one offset for all lost the events of
    the other partitions on reconnect), and the alert ids already printed."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.offsets: dict[int, int] = {}
        self.alert_ids: set[str] = set()

    def merge(self, cursor: Any) -> None:
        """A cursor the edge gave (the subscribe ``ack``, ``resumed``): a list of "p:o"."""
        for text in cursor if isinstance(cursor, list) else [cursor]:
            if isinstance(text, str):
                self._see(text)

    def _see(self, text: str) -> bool:
        try:
            p, o = parse_cursor(text)
        except ValueError:
            return True
        last = self.offsets.get(p)
        if last is not None and o <= last:
            return False
        self.offsets[p] = o
        return True

    def fresh(self, event: dict[str, Any]) -> bool:
        """Move the position past ``event``; False if it was already seen (by offset,
        or an alert by id: a worker that crashed publishes it again)."""
        kind = event.get("type")
        if (kind == "ack" and event.get("op") == "subscribe") or kind == "resumed":
            self.merge(event.get("cursor"))
        offset = event.get("offset")
        channels = event.get("channels") or [event.get("channel")]
        if isinstance(offset, str) and self.channel in channels and not self._see(offset):
            return False
        alert = event.get("alert")
        if kind == "alert" and isinstance(alert, dict) and isinstance(alert.get("id"), str):
            if alert["id"] in self.alert_ids:
                return False
            self.alert_ids.add(alert["id"])
        return True

    def first_frame(self) -> dict[str, Any]:
        """Subscribe the first time; resume from every partition's offset after."""
        if not self.offsets:
            return {"type": "subscribe", "channel": self.channel}
        cursors = [format_cursor(p, o) for p, o in sorted(self.offsets.items())]
        return {"type": "resume", "cursors": {self.channel: cursors}}


async def watch(
    base_url: str,
    token: str,
    channel: str,
    *,
    count: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print events of ``channel`` until interrupted or ``count`` events were printed."""
    position = _Position(channel)
    printed = 0
    delay = 0.5
    url = base_url.rstrip("/") + "/api/v1/live/ws"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.ws_connect(url, headers=headers, heartbeat=20) as ws:
                    await ws.send_json(position.first_frame())
                    delay = 0.5
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        event = json.loads(msg.data)
                        if not isinstance(event, dict) or not position.fresh(event):
                            continue
                        line = format_event(event)
                        if line is not None:
                            print(line, file=out, flush=True)
                            printed += 1
                            if count is not None and printed >= count:
                                return 0
                    if ws.close_code in (4401, 4403):
                        print(f"refused by the edge (close code {ws.close_code})", file=out)
                        return 1
            except aiohttp.ClientError as exc:
                print(f"connection lost ({exc}); retrying in {delay:.1f} s", file=out, flush=True)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 15.0)


def channel_for(session_id: UUID | None, user_id: UUID | None) -> str:
    if session_id is not None:
        return session_channel(session_id)
    if user_id is not None:
        return user_channel(user_id)
    raise ValueError("give a session id or --user")
