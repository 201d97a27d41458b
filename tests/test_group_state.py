"""A board's storage (agents/group_state.py) over plain dicts: a small header per group,
a row per member written only when it changed, the board rebuilt from them (pure unit
tests; the restart through real workers is tests/test_leaderboard_e2e.py)."""

from __future__ import annotations

from typing import Any

import orjson

from agents import leaderboard as lb
from agents.group_state import REMOVED, BoardStore, member_key
from agents.write_behind import Hold
from tests.ids import sid
from tests.test_leaderboard import GROUP, _input

KEY = GROUP.encode()


class _Event:
    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> bool:
        self.acked = True
        return True


class _Recording(dict[bytes, Any]):
    """A table that remembers which keys were written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def __setitem__(self, key: bytes, value: Any) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)


def _fold(store: BoardStore, *records: dict[str, Any]) -> tuple[lb.Board, _Event]:
    event = _Event()
    hold = Hold(event)
    board: lb.Board = {}
    for record in records:
        board, _ = store.checkout(KEY, GROUP)
        lb.apply(board, record)
        store.checkin(KEY, board, record, hold)
    hold.release()
    return board, event


def _race(athletes: int, seconds: int) -> list[dict[str, Any]]:
    return [
        _input(a, t=1.0 * s, elapsed_s=1.0 * s, distance_m=(5.0 + a) * s)
        for s in range(1, seconds + 1)
        for a in range(athletes)
    ]


def test_a_board_is_stored_as_a_small_header_and_a_row_per_member() -> None:
    headers, members = _Recording(), _Recording()
    store = BoardStore(headers, members, every_s=3.0)
    board, event = _fold(store, *_race(athletes=50, seconds=120))
    assert not event.acked  # nothing written yet
    store.headers.write_all()
    store.members.write_all()
    assert event.acked
    assert set(members) == {member_key(KEY, sid(200 + a)) for a in range(50)}
    assert "members" not in headers[KEY] and "pub" not in headers[KEY]
    whole = len(orjson.dumps(board))
    header = len(orjson.dumps(headers[KEY]))
    row = max(len(orjson.dumps(value)) for value in members.values())
    print(f"\nboard {whole} B as one value; header {header} B, largest member row {row} B")
    assert header < 1_000 and row < whole / 20


def test_only_the_members_that_changed_are_written_again() -> None:
    headers, members = _Recording(), _Recording()
    store = BoardStore(headers, members, every_s=3.0)
    _fold(store, *_race(athletes=5, seconds=3))
    store.members.write_all()
    members.writes.clear()
    _fold(store, _input(2, t=9.0, elapsed_s=9.0, distance_m=60.0))
    store.members.write_all()
    assert members.writes == [member_key(KEY, sid(202))]


def test_a_restarted_worker_rebuilds_the_board_from_its_rows() -> None:
    headers: dict[bytes, Any] = {}
    members: dict[bytes, Any] = {}
    first = BoardStore(headers, members, every_s=3.0)
    board, _ = _fold(first, *_race(athletes=4, seconds=30))
    lb.emit(board, 100.0, full=True)
    first.headers.write_all()
    first.members.write_all()
    # JSON through the changelog, as a restarted worker reads it back.
    headers = orjson.loads(orjson.dumps({k.decode(): v for k, v in headers.items()}))
    members = orjson.loads(orjson.dumps({k.decode(): v for k, v in members.items()}))
    second = BoardStore(
        {k.encode(): v for k, v in headers.items()},
        {k.encode(): v for k, v in members.items()},
        every_s=3.0,
    )
    rebuilt, fresh = second.checkout(KEY, GROUP)
    assert fresh
    assert rebuilt["seq"] == board["seq"] and rebuilt["members"] == board["members"]
    assert lb.standings(rebuilt) == lb.standings(board)
    # The same worker keeps its working copy: not rebuilt at every read.
    again, fresh = second.checkout(KEY, GROUP)
    assert again is rebuilt and not fresh
    second.checkin(KEY, again, {}, Hold(_Event()))
    second.headers.write_all()
    assert second.checkout(KEY, GROUP) == (rebuilt, False)


def test_a_removed_member_is_not_brought_back_by_a_rebuilt_board() -> None:
    headers: dict[bytes, Any] = {}
    members: dict[bytes, Any] = {}
    first = BoardStore(headers, members, every_s=3.0)
    removed = {"kind": "control", "group_id": GROUP, "action": "removed", "ingest_ms": 9,
               "at_ms": 9, "payload": {"athlete_id": sid(201), "leaving": False}}  # fmt: skip
    board, _ = _fold(first, *_race(athletes=3, seconds=5))
    first.members.write_all()
    board, _ = _fold(first, removed)
    first.headers.write_all()
    first.members.write_all()
    assert members[member_key(KEY, sid(201))] == REMOVED
    second = BoardStore(dict(headers), dict(members), every_s=3.0)
    rebuilt, fresh = second.checkout(KEY, GROUP)
    assert fresh and set(rebuilt["members"]) == {sid(200), sid(202)} == set(board["members"])
