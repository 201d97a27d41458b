"""Leaderboards on one socket: at most one frame per group a second, merged when behind.

The leaderboard agent publishes at most one ``leaderboard`` event per group a second
(docs/groups.md); a socket still must not get more (events arrive in bursts after a
stall, a resume replays several, two emissions may land 0.9 s apart), nor a queue of
stale boards when it reads slowly. :class:`BoardPacer` keeps, per group, what the
socket was given and when:

- a board arriving a second or more after the last one is queued as it is (the frame
  every socket shares: no parsing, no serialising per socket);
- one arriving sooner is held and goes out when the second is over; boards arriving
  meanwhile are merged into the held one (:func:`merge_boards`: the newest row per
  athlete), so the socket gets one frame with everything;
- while a queued board is still unwritten (a slow socket), a newer one is merged into
  that frame in place: the queue never holds two boards of a group; and the next one
  waits until the socket has taken the last (a big board on a slowly draining socket
  would otherwise be followed by the next at once);
- on subscribe and resume, deltas are held until the stored full board (Redis) is
  there, then merged onto it and sent as one full board; a delta not newer than
  what the socket has (by ``seq``) is dropped (a full board never is: after a
  worker's crash a ``seq`` may repeat, and the board it publishes first is full).

A merged delta covers several emissions: ``from_seq`` names its first, so a client
applies it on top of board ``from_seq - 1`` (see docs/groups.md).

A member's socket gets its window of the board, built from the whole board the pacer
keeps for it: a :class:`~web.standings.Standings` shared with every other member socket
that applied the same boards (web.standings), so 500 members cost one update and one
sort per board, not 500.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from web.standings import EMPTY, SHARED, Standings, StandingsMemo, rank_key

#: Seconds between two leaderboard frames of a group on one socket.
BOARD_INTERVAL_S = 1.0
#: How soon a held board is tried again while the last one is still being written.
_RETRY_S = 0.05
#: Rows above and below a member's own in its window.
NEIGHBOURS = 2
#: What a window board takes from the board it is built on (not its rows).
_NOT_HEADER = ("rows", "removed", "from_seq")


def window_rows(standings: Standings, athlete_id: str) -> list[dict[str, Any]]:
    """The leader, then ``NEIGHBOURS`` rows above and below the athlete's and its own
    (the first rows when it has none), by rank."""
    ranked = standings.ranked
    at = standings.place(athlete_id)
    if at is None:
        return ranked[: 1 + 2 * NEIGHBOURS]
    shown = ranked[max(0, at - NEIGHBOURS) : at + NEIGHBOURS + 1]
    return shown if shown[0] is ranked[0] else [ranked[0], *shown]


def merge_boards(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """``newer`` applied on top of ``older`` (both leaderboard events of one group, in
    order); neither is modified. A full ``newer`` replaces; a delta on a full board
    gives the full board after it; two deltas give one delta covering both (``from_seq``
    the first's), each athlete's newest row, ``removed`` those gone at the end."""
    if newer.get("full"):
        return newer
    rows = {row["athlete_id"]: row for row in older.get("rows") or ()}
    removed = set(older.get("removed") or ()) if not older.get("full") else set()
    for row in newer.get("rows") or ():
        rows[row["athlete_id"]] = row
        removed.discard(row["athlete_id"])
    for athlete in newer.get("removed") or ():
        rows.pop(athlete, None)
        removed.add(athlete)
    merged = {**newer, "rows": sorted(rows.values(), key=rank_key)}
    if older.get("full"):
        merged["full"] = True
        merged["removed"] = []
        merged.pop("from_seq", None)
    else:
        merged["removed"] = sorted(removed)
        merged["from_seq"] = older.get("from_seq", older.get("seq"))
    return merged


class QueuedFrame(Protocol):
    """What the connection's queue holds (``web.connection._Item``). The pacer stamps a
    leaderboard frame with its group, whether it is the final board, and the newest
    board it includes (``ingest_ms``, ``read_at``: when the edge read it from ``live``)
    for the edge's metrics (web.observability)."""

    frame: str
    alive: bool
    taken: bool
    written: bool
    written_at: float | None
    ingest_ms: int | None
    group: str | None
    final: bool
    read_at: float | None


#: Queue a frame on the socket: (frame, ingest_ms) -> the queued item (None: closing).
Send = Callable[[str, int | None], QueuedFrame | None]


@dataclass
class _Group:
    #: The newest ``seq`` the socket was given (queued or held); -1: none yet.
    seq: int = -1
    #: When the last frame of the group was queued (monotonic s).
    last_at: float = -math.inf
    #: The last queued frame and its board, while the writer has not taken it.
    queued: QueuedFrame | None = None
    queued_board: dict[str, Any] | None = None
    #: A board waiting for its second, or for the stored board.
    held: dict[str, Any] | None = None
    held_ingest: int | None = None
    held_read_at: float | None = None
    timer: asyncio.TimerHandle | None = None
    #: The stored board is being read (subscribe, resume): hold everything.
    waiting: bool = False
    #: A member's socket: its athlete id; it gets its window of the board (the leader
    #: and the rows around its own), built here from the whole board kept below.
    window: str | None = None
    standings: Standings = EMPTY
    #: Boards that came while waiting for the stored one (a window's are applied after it).
    raw: list[dict[str, Any]] = field(default_factory=list)


class BoardPacer:
    def __init__(
        self,
        send: Send,
        *,
        interval_s: float = BOARD_INTERVAL_S,
        on_merge: Callable[[], None] | None = None,
        memo: StandingsMemo = SHARED,
    ) -> None:
        self._send = send
        self._memo = memo
        self._interval_s = interval_s
        self._on_merge = on_merge
        self._groups: dict[str, _Group] = {}
        self.closed = False

    def _group(self, group_id: str) -> _Group:
        state = self._groups.get(group_id)
        if state is None:
            state = self._groups[group_id] = _Group()
        return state

    def offer(
        self,
        group_id: str,
        board: dict[str, Any],
        frame: str | None,
        ingest_ms: int | None,
        read_at: float | None = None,
    ) -> None:
        """A leaderboard event for the socket; ``frame`` its shared serialised form
        (None: serialise ``board``). ``board`` is read, never modified. ``ingest_ms``
        and ``read_at`` (monotonic s the edge read it from ``live``): a live board's,
        None for a replayed one."""
        if self.closed:
            return
        state = self._group(group_id)
        if state.window is not None:
            if state.waiting:
                state.raw.append(board)
                return
            self._apply(group_id, state, board)
            board, frame = self._windowed(state, board), None
        seq = board.get("seq")
        if (
            isinstance(seq, int)
            and seq <= state.seq
            and not state.waiting
            and not board.get("full")
        ):
            # Already in what the socket has. A full board always goes on: after a
            # worker's crash a seq may repeat, and its first board is full.
            return
        if state.waiting or state.held is not None:
            self._hold(state, board, ingest_ms, read_at)
            if not state.waiting and state.timer is None:
                self._arm(group_id, state)
            return
        self._place(group_id, state, board, frame, ingest_ms, read_at)

    def _hold(
        self,
        state: _Group,
        board: dict[str, Any],
        ingest_ms: int | None,
        read_at: float | None,
    ) -> None:
        if state.held is not None and self._on_merge is not None:
            self._on_merge()
        state.held = board if state.held is None else merge_boards(state.held, board)
        if ingest_ms is not None:
            state.held_ingest = ingest_ms
        if read_at is not None:
            state.held_read_at = read_at

    def _place(
        self,
        group_id: str,
        state: _Group,
        board: dict[str, Any],
        frame: str | None,
        ingest_ms: int | None,
        read_at: float | None = None,
    ) -> None:
        queued = state.queued
        if queued is not None and not queued.taken and queued.alive and state.queued_board:
            # The socket has not taken the last one yet: one frame with both.
            merged = merge_boards(state.queued_board, board)
            queued.frame = orjson.dumps(merged).decode()
            queued.final = bool(merged.get("final"))
            if ingest_ms is not None:
                queued.ingest_ms = ingest_ms
            if read_at is not None:
                queued.read_at = read_at
            state.queued_board = merged
            self._given(state, merged)
            if self._on_merge is not None:
                self._on_merge()
            return
        now = time.monotonic()
        writing = queued is not None and queued.taken and not queued.written and queued.alive
        if now - self._last(state) < self._interval_s or writing:
            # Too soon, or the last one is still being written (a socket that drains
            # slowly would otherwise take two back to back): held, merged, and tried
            # again when the second is over (then every _RETRY_S while it writes).
            self._hold(state, board, ingest_ms, read_at)
            self._arm(group_id, state)
            return
        item = self._send(frame if frame is not None else orjson.dumps(board).decode(), ingest_ms)
        if item is not None:
            item.group, item.final, item.read_at = group_id, bool(board.get("final")), read_at
        state.queued, state.queued_board, state.last_at = item, board, now
        self._given(state, board)

    @staticmethod
    def _last(state: _Group) -> float:
        """When the socket last got a board of the group: queued, or written if later
        (a busy loop may write a frame well after it was queued)."""
        written = state.queued.written_at if state.queued is not None else None
        return state.last_at if written is None else max(state.last_at, written)

    @staticmethod
    def _given(state: _Group, board: dict[str, Any]) -> None:
        seq = board.get("seq")
        if isinstance(seq, int):
            state.seq = max(state.seq, seq)

    def _arm(self, group_id: str, state: _Group) -> None:
        if state.timer is None:
            delay = max(_RETRY_S, self._last(state) + self._interval_s - time.monotonic())
            state.timer = asyncio.get_running_loop().call_later(delay, self._due, group_id)

    def _due(self, group_id: str) -> None:
        state = self._groups.get(group_id)
        if state is None or self.closed:
            return
        state.timer = None
        if state.waiting or state.held is None:
            return
        board, ingest, read_at = state.held, state.held_ingest, state.held_read_at
        state.held, state.held_ingest, state.held_read_at = None, None, None
        self._place(group_id, state, board, None, ingest, read_at)

    # --- a member's window ------------------------------------------------------------

    def set_window(self, group_id: str, athlete_id: str | None) -> None:
        """The socket follows the group as member ``athlete_id`` (its window of the
        board), or as its coach (None: the whole board, the frame every coach shares)."""
        self._group(group_id).window = athlete_id

    def _apply(self, group_id: str, state: _Group, board: dict[str, Any]) -> None:
        seq = board.get("seq")
        if not board.get("full") and isinstance(seq, int) and seq <= state.standings.seq:
            return  # already applied
        # Every member socket of the group applies the same board: computed once.
        state.standings = self._memo.apply(group_id, state.standings, board)

    @staticmethod
    def _windowed(state: _Group, board: dict[str, Any]) -> dict[str, Any]:
        """A full board of the member's window, with ``board``'s header (seq, offset,
        ingest_ms, final...) and ``size``, the athletes on the whole board."""
        assert state.window is not None
        out = {k: v for k, v in board.items() if k not in _NOT_HEADER}
        out.update(full=True, window=True, size=len(state.standings.rows), removed=[],
                   rows=window_rows(state.standings, state.window))  # fmt: skip
        return out

    # --- subscribe and resume ----------------------------------------------------------

    def start_snapshot(self, group_id: str) -> None:
        """The stored board is about to be read: hold the group's boards until then.
        Call in the same event-loop step as the subscription is registered."""
        self._group(group_id).waiting = True

    def snapshot(self, group_id: str, stored: dict[str, Any] | None) -> None:
        """The stored full board (None: there is none yet, or it could not be read):
        merged with what was held meanwhile (only what is newer) and sent."""
        state = self._group(group_id)
        state.waiting = False
        if state.window is not None:
            # The stored board, then what came meanwhile (older deltas are skipped).
            raws, state.raw = state.raw, []
            last = None
            for raw in [stored, *raws] if stored is not None else raws:
                self._apply(group_id, state, raw)
                last = raw
            if last is not None:
                self._place(group_id, state, self._windowed(state, last), None, None)
            return
        held, state.held = state.held, None
        ingest, state.held_ingest = state.held_ingest, None
        read_at, state.held_read_at = state.held_read_at, None
        if stored is not None:
            stored_seq = stored.get("seq")
            if isinstance(stored_seq, int) and stored_seq <= state.seq:
                stored = None  # the socket already has something as new
        board = stored
        if held is not None:
            held_seq = held.get("seq")
            newer = (
                board is None or not isinstance(held_seq, int) or held_seq > board.get("seq", -1)
            )
            board = held if board is None else merge_boards(board, held) if newer else board
        if board is None:
            return
        live = board is held
        self._place(
            group_id, state, board, None, ingest if live else None, read_at if live else None
        )

    def close(self) -> None:
        self.closed = True
        for state in self._groups.values():
            if state.timer is not None:
                state.timer.cancel()
        self._groups.clear()

    def forget(self, group_id: str) -> None:
        """The socket unsubscribed from the group."""
        state = self._groups.pop(group_id, None)
        if state is not None and state.timer is not None:
            state.timer.cancel()
