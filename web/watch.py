"""``livecoach watch``: follow a live session (or an athlete) in the terminal.

A client of the edge (:class:`web.client.Client`): it authenticates with the token,
subscribes to ``live:session:{id}`` (or ``live:user:{id}``), prints one line per event,
and after a dropped connection reconnects with backoff and resumes from the last cursor
it saw, so nothing is missed: its position is one offset per partition of ``live`` (from
the subscribe reply, then from each event), and an alert id is printed once.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO
from uuid import UUID

from pipeline.constants import session_channel, user_channel
from web.client import Client, Refused


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


async def watch(
    base_url: str,
    token: str,
    channel: str,
    *,
    count: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print events of ``channel`` until interrupted or ``count`` events were printed."""
    printed = 0
    async with Client(base_url, token) as client:
        try:
            async for event in client.follow(channel):
                if event["type"] == "connection_lost":
                    print(f"connection lost ({event['error']}); retrying in "
                          f"{event['retry_in_s']:.1f} s", file=out, flush=True)  # fmt: skip
                    continue
                line = format_event(event)
                if line is not None:
                    print(line, file=out, flush=True)
                    printed += 1
                    if count is not None and printed >= count:
                        return 0
        except Refused as exc:
            print(exc, file=out)
            return 1
    return 0


def channel_for(session_id: UUID | None, user_id: UUID | None) -> str:
    if session_id is not None:
        return session_channel(session_id)
    if user_id is not None:
        return user_channel(user_id)
    raise ValueError("give a session id or --user")
