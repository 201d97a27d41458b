"""The write-behind session store of the live agent (agents/write_behind.py).

A pure unit test: the table is a dict, the events are stand-ins with Faust's ``ack()``,
and the clock is ours.
"""

from __future__ import annotations

from typing import Any

from agents.write_behind import DeferredDeletes, Hold, WriteBehind


class _Event:
    """The part of a Faust event the store uses."""

    def __init__(self) -> None:
        self.acks = 0

    def ack(self) -> bool:
        self.acks += 1
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(every_s: float = 3.0) -> tuple[WriteBehind, dict[bytes, Any], _Clock]:
    table: dict[bytes, Any] = {}
    clock = _Clock()
    store = WriteBehind(table, lambda key, state: {**state, "saved": True}, every_s=every_s,
                        clock=clock)  # fmt: skip
    return store, table, clock


def _process(store: WriteBehind, key: bytes, n: int, hold: Hold) -> None:
    state = store.checkout(key) or {"n": 0}
    store.checkin(key, {**state, "n": n}, hold)


def test_a_state_is_written_every_few_seconds_and_its_records_acked_then() -> None:
    store, table, clock = _store()
    events = []
    for second in range(4):
        event = _Event()
        events.append(event)
        hold = Hold(event)
        _process(store, b"1", second + 1, hold)
        hold.release()
        if second < 3:
            assert table == {} and event.acks == 0  # held: not saved yet
        clock.now += 1.0
    # The fourth record came 3 s after the first unsaved one: saved, all four acked.
    assert table == {b"1": {"n": 4, "saved": True}}
    assert [e.acks for e in events] == [1, 1, 1, 1]
    assert store.checkout(b"1") == {"n": 4, "saved": True}


def test_an_event_of_several_sessions_is_acked_once_all_are_saved() -> None:
    store, table, clock = _store()
    event, second = _Event(), _Event()
    hold = Hold(event)
    _process(store, b"1", 1, hold)
    _process(store, b"2", 1, hold)
    hold.release()
    clock.now += 3.0
    later = Hold(second)
    _process(store, b"1", 2, later)  # writes session 1 only
    assert set(table) == {b"1"} and event.acks == 0
    _process(store, b"2", 2, later)
    later.release()
    assert set(table) == {b"1", b"2"} and event.acks == 1 and second.acks == 1


def test_quiet_sessions_are_written_at_commits_and_the_edited_one_is_not() -> None:
    store, table, clock = _store()
    first = _Event()
    hold = Hold(first)
    _process(store, b"quiet", 1, hold)
    _process(store, b"busy", 1, hold)
    hold.release()
    clock.now += 3.5
    assert store.write_due() == 0  # due only after twice the interval
    clock.now += 3.0
    store.checkout(b"busy")  # the agent is half-way through a record of this one
    assert store.write_due() == 1
    assert set(table) == {b"quiet"} and first.acks == 0
    assert store.write_all() == 0  # still being edited
    store.checkin(b"busy", {"n": 2}, Hold(_Event()))  # long overdue: written right away
    assert set(table) == {b"quiet", b"busy"} and first.acks == 1
    assert store.dirty == {} and store.write_all() == 0


class _Log(dict[str, Any]):
    """A table that records the order of writes and deletes (the changelog's order)."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def __setitem__(self, key: Any, value: Any) -> None:
        self.log.append(f"set {key!r}")
        super().__setitem__(key, value)

    def pop(self, key: Any, default: Any = None) -> Any:
        self.log.append(f"del {key!r}")
        return super().pop(key, default)


def test_a_block_delete_reaches_the_changelog_only_after_its_sessions_state() -> None:
    log: list[str] = []
    blocks = DeferredDeletes(_Log(log), lambda key: key.partition("/")[0].encode())
    states = _Log(log)
    clock = _Clock()
    store = WriteBehind(states, every_s=3.0, clock=clock, written=blocks.flush)
    blocks["4/power/0"] = [1.0]
    blocks["7/power/0"] = [2.0]
    hold = Hold(_Event())
    store.checkin(b"4", {"n": 1}, hold)
    del blocks["4/power/0"]  # the state being built no longer reads block 0
    del blocks["7/power/0"]
    assert blocks["4/power/0"] == [1.0]  # held: the saved state may still need it
    assert "del '4/power/0'" not in log
    clock.now += 3.0
    store.checkin(b"4", {"n": 2}, hold)  # due: session 4's state is written
    assert log[-2:] == ["set b'4'", "del '4/power/0'"]
    assert "del '7/power/0'" not in log  # session 7's state was not written yet
    assert blocks.held == {b"7": ["7/power/0"]}
