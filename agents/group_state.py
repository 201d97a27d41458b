"""Where the leaderboard agent keeps its groups' boards: small pieces, written behind.

A board (:mod:`agents.leaderboard`) holds every member's latest input and distance
history. Stored as one table value it was about 1.1 MB of JSON for 500 athletes after
10 minutes, serialised in one piece every few seconds: a stall of the whole worker's
event loop (every session's ``metrics_update`` waited behind it). Here it is split:

- the **header** (the board without its members and published rows: the group, ``seq``,
  ``finished``, the emission times) in the ``group-boards`` table, keyed by group;
- each **member** (its input and history) in the ``group-members`` table
  (:class:`~agents.write_behind.OwnedTable`), keyed ``<group>/<athlete>`` and kept in
  the group's partition, written only when that member's input changed.

Both are :class:`~agents.write_behind.WriteBehind` stores: a ``groups`` record is acked
once the header and the member it changed are written, so a restarted worker rebuilds
every board from its rows and the inputs read again from the last committed offset.
The working copy of a board stays in memory (:attr:`BoardStore.working`); it is
rebuilt from the tables when this worker has none, or when the table's header is not
the one this worker last wrote or read (another worker wrote the group meanwhile: a
rebalance). The published rows (``pub``) are not stored: a rebuilt board's first
emission is a full board anyway. A member the coach removed is written as
:data:`REMOVED` (a rebuilt board does not bring it back).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from agents import leaderboard as lb
from agents.write_behind import Hold, WriteBehind

#: Board keys not in its header: stored per member, or not at all.
_NOT_IN_HEADER = ("members", "pub")
#: The stored row of a member removed from the group (a rebuilt board skips it).
REMOVED: dict[str, Any] = {"removed": True}


def member_key(group: bytes, athlete: str) -> bytes:
    """The ``group-members`` key of a member: ``<group key>/<athlete id>``."""
    return group + b"/" + athlete.encode()


class BoardStore:
    """The boards of this worker's groups, their headers and members written behind."""

    def __init__(
        self,
        headers: MutableMapping[bytes, Any],
        members: MutableMapping[bytes, Any],
        *,
        every_s: float,
    ) -> None:
        self.headers = WriteBehind(headers, self._header_of, every_s=every_s)
        self.members = WriteBehind(members, every_s=every_s)
        self.member_table = members
        #: Group key -> (the header the table holds for it, as this worker knows, the board).
        self.working: dict[bytes, tuple[Any, lb.Board]] = {}

    def _header_of(self, key: bytes, board: lb.Board) -> dict[str, Any]:
        header = {name: value for name, value in board.items() if name not in _NOT_IN_HEADER}
        self.working[key] = (header, board)
        return header

    def checkout(self, key: bytes, group_id: str) -> tuple[lb.Board, bool]:
        """The board of ``key`` and whether it was just made or rebuilt (not in memory)."""
        state = self.headers.checkout(key)
        known = self.working.get(key)
        if known is not None and (state is known[0] or state is known[1]):
            return known[1], False
        if state is None:
            board = lb.new_board(group_id)
        else:
            board = {**state, "members": self._members_of(key), "pub": {}}
        self.working[key] = (state, board)
        return board, True

    def _members_of(self, key: bytes) -> dict[str, Any]:
        prefix = key + b"/"
        found: dict[str, Any] = {}
        for stored in list(self.member_table.keys()):
            if stored.startswith(prefix):
                found[stored[len(prefix) :].decode()] = self.member_table[stored]
        for stored, dirty in self.members.dirty.items():  # not written yet: newer
            if stored.startswith(prefix):
                found[stored[len(prefix) :].decode()] = dirty.state
        return {athlete: row for athlete, row in found.items() if row and row.get("in")}

    def checkin(self, key: bytes, board: lb.Board, record: dict[str, Any], hold: Hold) -> None:
        """``board`` holds ``record`` (one of ``hold``'s event): write what it changed."""
        athlete = record.get("athlete_id")
        member = board["members"].get(str(athlete)) if athlete is not None else None
        if member is not None:
            self.members.checkin(member_key(key, str(athlete)), member, hold)
        elif record.get("action") == "removed":
            removed = (record.get("payload") or {}).get("athlete_id")
            if removed is not None and str(removed) not in board["members"]:
                self.members.checkin(member_key(key, str(removed)), REMOVED, hold)
        self.headers.checkin(key, board, hold)

    def forget(self, key: bytes) -> None:
        """Drop the working copy (another worker has the group now)."""
        self.working.pop(key, None)
