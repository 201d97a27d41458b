"""Wire-protocol constants and helpers of the edge: close codes, cursors, channels.

The envelope models themselves belong to :mod:`pipeline.models`; what is here is what
only the edge needs: how a channel name maps to partitions of ``live``, how a stream
position is written on the wire (``"<partition>:<offset>"``) and the close codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

from pipeline.constants import group_channel, session_channel, user_channel
from pipeline.models import UUID_PATTERN
from pipeline.records import group_key, session_key
from pipeline.transport.streams import partition_for_key

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
#: A backing service failed while the socket was being set up: retry later.
CLOSE_INTERNAL = 1011
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_IDLE = 4408
#: The client fell too far behind (its send queue overflowed): reconnect and resume.
CLOSE_TOO_SLOW = 4410
CLOSE_RATE_LIMITED = 4429

_CHANNEL = re.compile(rf"^live:(session|user|group):({UUID_PATTERN})$")
_CURSOR = re.compile(r"^([0-9]{1,4}):(-1|[0-9]{1,19})$")


@dataclass(frozen=True)
class Channel:
    """A parsed channel name: ``live:session:{id}``, ``live:user:{athlete id}`` or
    ``live:group:{group id}``."""

    kind: str  # "session", "user" or "group"
    ident: UUID

    @property
    def name(self) -> str:
        if self.kind == "session":
            return session_channel(self.ident)
        return user_channel(self.ident) if self.kind == "user" else group_channel(self.ident)

    def partitions(self, live_partitions: int) -> list[int]:
        """The partitions of ``live`` this channel's events can be on."""
        if self.kind == "session":
            return [partition_for_key(session_key(self.ident), live_partitions)]
        if self.kind == "group":
            # Its leaderboards and chat, keyed by group id. The members' alerts the
            # coach gets on it come from their sessions' partitions: live only (a
            # resume replays them on the athletes' own channels, not here). Were the
            # channel on every partition, a member's cursor on the partitions where it
            # gets nothing would stay where it subscribed, and a resume would replay
            # (or refuse, over max_replay) every entry since.
            return [partition_for_key(group_key(self.ident), live_partitions)]
        # A user's sessions are spread over partitions by session id.
        return list(range(live_partitions))


def parse_channel(name: str) -> Channel:
    match = _CHANNEL.match(name)
    if match is None:
        raise ValueError(
            "expected live:session:<uuid>, live:user:<uuid> or live:group:<uuid>"
            f" (lower case), got {name[:90]!r}"
        )
    return Channel(match.group(1), UUID(match.group(2)))


def format_cursor(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


def parse_cursor(text: str) -> tuple[int, int]:
    """``"3:120"`` -> (3, 120): the last offset seen on partition 3 (-1: none)."""
    match = _CURSOR.match(text)
    if match is None:
        raise ValueError(f"expected a cursor '<partition>:<offset>', got {text!r}")
    return int(match.group(1)), int(match.group(2))


def channels_of_event(event: dict[str, object]) -> list[str]:
    """The channels a ``live`` event is delivered on: its session's, then its athlete's
    (then, for an alert of a session in a group, the group's: its coach gets it there).

    An event may name them explicitly in ``channels`` (a list of channel names);
    otherwise they come from ``session_id``, ``user_id`` (the athlete) and an alert's
    ``group_id``, UUIDs written in canonical form (as ``str(uuid.UUID)`` writes them).
    """
    explicit = event.get("channels")
    if isinstance(explicit, list):
        return [c for c in explicit if isinstance(c, str)]
    out: list[str] = []
    session_id = event.get("session_id")
    if isinstance(session_id, str | UUID):
        out.append(session_channel(session_id))
    user_id = event.get("user_id")
    if isinstance(user_id, str | UUID):
        out.append(user_channel(user_id))
    group_id = event.get("group_id")
    if event.get("type") == "alert" and isinstance(group_id, str | UUID):
        out.append(group_channel(group_id))
    return out
