"""A group's whole board as the edge keeps it for member sockets, shared between them.

A member's socket gets its window of the board (web.boards), so the edge keeps the
whole board per socket and applies every delta to it. Done per socket, 500 members of
one race cost 500 row updates and 500 sorts of 500 rows for every board, all in the
event-loop step that dispatches it (about 0.2-0.3 s a second of the edge's loop, during
which nothing else is written). Every socket that follows the group live applies the
same boards (the same parsed objects: the fan-out parses a ``live`` entry once) to the
same standings, so the result is computed once and shared:

- :class:`Standings` is immutable: rows by athlete, the ``seq`` applied, and, computed
  on first use, the rows in rank order and each athlete's place in it;
- :class:`StandingsMemo` remembers, per group, the last boards applied and what each gave
  from each standings it was applied to (by identity), so the next socket gets the same
  object; a full board gives the same standings whatever it was applied to, and one
  read from Redis by each socket on subscribe (a parse of its own) is matched by
  content with the last full board of the same ``seq``, so sockets that subscribed at
  different times end up on one shared chain too.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

Row = dict[str, Any]


def rank_key(row: Row) -> tuple[int, float, str]:
    """Ranked rows by rank, then the unranked (no data) last."""
    rank = row.get("rank")
    if isinstance(rank, int | float):
        return (0, float(rank), "")
    return (1, 0.0, str(row.get("athlete_id")))


class Standings:
    """A whole board: never modified once built (sockets share it)."""

    __slots__ = ("_index", "_ranked", "rows", "seq")

    def __init__(self, rows: dict[str, Row], seq: int) -> None:
        self.rows = rows
        #: The newest ``seq`` applied (-1: none yet).
        self.seq = seq
        self._ranked: list[Row] | None = None
        self._index: dict[str, int] | None = None

    @property
    def ranked(self) -> list[Row]:
        """The rows in rank order (ties as they came)."""
        if self._ranked is None:
            self._ranked = sorted(self.rows.values(), key=rank_key)
        return self._ranked

    def place(self, athlete_id: str) -> int | None:
        """The athlete's position in :attr:`ranked` (None: not on the board)."""
        if self._index is None:
            self._index = {str(r.get("athlete_id")): i for i, r in enumerate(self.ranked)}
        return self._index.get(athlete_id)

    def then(self, board: dict[str, Any]) -> Standings:
        """These standings with ``board`` (a full board or a delta) applied."""
        seq = board.get("seq")
        new_seq = seq if isinstance(seq, int) else self.seq
        if board.get("full"):
            return Standings({r["athlete_id"]: r for r in board.get("rows") or ()}, new_seq)
        rows = dict(self.rows)
        for row in board.get("rows") or ():
            rows[row["athlete_id"]] = row
        for athlete in board.get("removed") or ():
            rows.pop(athlete, None)
        return Standings(rows, new_seq)


#: No standings yet (a socket's start).
EMPTY = Standings({}, -1)


class _Last:
    """What the last board of a group gave, from each standings it was applied to."""

    __slots__ = ("board", "results")

    def __init__(self, board: dict[str, Any]) -> None:
        self.board = board
        #: id(standings before) -> (standings before, after); the full board's under 0.
        self.results: dict[int, tuple[Standings | None, Standings]] = {}


#: Boards remembered per group: a socket resuming may apply an older one between two
#: sockets applying the newest.
_BOARDS_KEPT = 4


class StandingsMemo:
    """Per group, the last boards applied and their results (at most ``max_groups``)."""

    def __init__(self, max_groups: int = 4096) -> None:
        self._max_groups = max_groups
        self._last: OrderedDict[str, deque[_Last]] = OrderedDict()
        #: group -> (seq, rows, standings) of the last full board applied.
        self._full: dict[str, tuple[Any, list[Row], Standings]] = {}

    def _entry(self, group_id: str, board: dict[str, Any]) -> _Last:
        kept = self._last.get(group_id)
        if kept is None:
            kept = self._last[group_id] = deque(maxlen=_BOARDS_KEPT)
            while len(self._last) > self._max_groups:
                gone, _ = self._last.popitem(last=False)
                self._full.pop(gone, None)
        elif kept[-1].board is not board:
            self._last.move_to_end(group_id)
        for last in reversed(kept):
            if last.board is board:
                return last
        kept.append(_Last(board))
        return kept[-1]

    def apply(self, group_id: str, before: Standings, board: dict[str, Any]) -> Standings:
        """``before.then(board)``, the same object for every socket that asks."""
        last = self._entry(group_id, board)
        if board.get("full"):
            hit = last.results.get(0)
            if hit is None:
                hit = last.results[0] = (None, self._full_board(group_id, board))
            return hit[1]
        key = id(before)
        found = last.results.get(key)
        if found is not None and found[0] is before:
            return found[1]
        after = before.then(board)
        last.results[key] = (before, after)
        return after

    def _full_board(self, group_id: str, board: dict[str, Any]) -> Standings:
        rows = board.get("rows") or []
        seq = board.get("seq")
        known = self._full.get(group_id)
        if known is not None and known[0] == seq and (known[1] is rows or known[1] == rows):
            return known[2]  # the same board, parsed apart (each socket's stored board)
        standings = EMPTY.then(board)
        self._full[group_id] = (seq, rows, standings)
        return standings

    def forget(self, group_id: str) -> None:
        self._last.pop(group_id, None)
        self._full.pop(group_id, None)


#: The edge process's memo: every socket's pacer (web.boards) shares it.
SHARED = StandingsMemo()
