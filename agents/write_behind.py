"""Session states kept in memory for a few seconds, written to their table in the background.

A Faust table writes its changelog on every assignment. The live agent changes a
session's state on every record, so at 1 Hz a session cost one changelog entry (about
13 KB of JSON) per sample, the largest single cost of the agent. Recovery does not need
them all. A restarted worker rebuilds a session from the changelog and then replays the
``samples`` records from the last committed offset; that is correct as long as no offset
is committed before the state that includes its record has been written.

:class:`WriteBehind` keeps that rule with Faust's own acknowledgements. The agent reads
its stream without automatic acks; a record is acked only once the state that includes
it has been written to the table (``table[key] = state`` sends the changelog entry), and
Faust commits nothing beyond the lowest unacked offset of a partition. A session's state
is written on the first record at least ``every_s`` after its last write (an event
that carries several sessions' records, see :func:`pipeline.transport.driver.read_in_batches`,
is acked once all of them are written), so writes are
spread over time as the sessions' samples are, instead of arriving in one burst at each
commit (1,000 sessions cost a tenth of a second of serialising: a stall in the live
path). States of sessions that went quiet are written at the next commit, and all of
them when the worker is rebalancing or stopping, so that nothing waits on them.

Ordering holds: a record's events are published before its state is handed over here,
so a worker killed at any point replays the record and publishes again, never the
reverse; and a replayed sample already in a written state is dropped by the agent as
seen (sample times only move forward).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import faust
from faust import current_event
from faust.sensors import Sensor

State = dict[str, Any]
V = TypeVar("V")


class Ackable(Protocol):
    """What a hold needs of a Faust event."""

    def ack(self) -> bool: ...


class Hold:
    """An event whose records are in states not written yet; acked when none is left."""

    __slots__ = ("event", "remaining")

    def __init__(self, event: Ackable) -> None:
        self.event = event
        self.remaining = 1  # the agent's own, until it has gone through every record

    def release(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.event.ack()


@dataclass
class _Dirty:
    since: float
    state: State
    holds: list[Hold] = field(default_factory=list)


class WriteBehind:
    """A write-behind view of a Faust table keyed by bytes, acking records once saved."""

    def __init__(
        self,
        table: MutableMapping[bytes, Any],
        prepare: Callable[[bytes, State], State] = lambda key, state: state,
        *,
        every_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        written: Callable[[bytes], None] = lambda key: None,
    ) -> None:
        self.table = table
        #: Called right after a state was handed to its table (see :class:`DeferredDeletes`).
        self.written = written
        #: Brings a state up to date just before it is written (the processor's snapshot).
        self.prepare = prepare
        self.every_s = every_s
        self.clock = clock
        #: Sessions with records not yet in a written state, oldest first.
        self.dirty: dict[bytes, _Dirty] = {}
        self.editing: bytes | None = None

    def checkout(self, key: bytes) -> State | None:
        """The latest state of ``key``, marked as being edited until :meth:`checkin`."""
        self.editing = key
        dirty = self.dirty.get(key)
        return dirty.state if dirty is not None else self.table.get(key)

    def checkin(self, key: bytes, state: State, hold: Hold) -> None:
        """``state`` includes a record of ``hold``'s event, whose events are published."""
        self.editing = None
        now = self.clock()
        dirty = self.dirty.get(key)
        if dirty is None:
            dirty = self.dirty[key] = _Dirty(now, state)
        dirty.state = state
        hold.remaining += 1
        dirty.holds.append(hold)
        if now - dirty.since >= self.every_s:
            self._write(key, dirty)

    def write_due(self) -> int:
        """Write the states of sessions that went quiet.

        Those still receiving records are written by :meth:`checkin`, spread over time;
        this waits twice as long, so that it does not take them all at once.
        """
        deadline = self.clock() - 2 * self.every_s
        due = []
        for key, dirty in self.dirty.items():
            if dirty.since > deadline:
                break  # oldest first: the rest are younger
            due.append(key)
        return self._write_keys(due)

    def write_all(self) -> int:
        """Write every state but the one being edited."""
        return self._write_keys(list(self.dirty))

    def _write_keys(self, keys: list[bytes]) -> int:
        written = 0
        for key in keys:
            if key != self.editing:
                self._write(key, self.dirty[key])
                written += 1
        return written

    def _write(self, key: bytes, dirty: _Dirty) -> None:
        del self.dirty[key]
        self.table[key] = self.prepare(key, dirty.state)
        self.written(key)
        for hold in dirty.holds:
            hold.release()


class DeferredDeletes(MutableMapping[str, V]):
    """A store (another table of the agent) whose deletes wait for the owner's state.

    The live agent writes a session's decoupling blocks at once, but the session's state,
    which says which blocks it still reads, only every few seconds (:class:`WriteBehind`).
    Deleting a block at once let the changelog run ahead of the saved state: a worker
    restarted from that state replayed samples that read the deleted block, and the agent
    crashed on a KeyError at every restart (tests/test_agents_e2e.py, sessions past 128
    samples). Here a delete is held per owner (the session) and done by :meth:`flush`
    right after the owner's state was written, so the changelog never holds a delete the
    saved state does not know of. A held delete lost in a crash is made again: the
    replayed samples retire the same blocks.
    """

    def __init__(self, store: MutableMapping[str, V], owner: Callable[[str], bytes]) -> None:
        self.store = store
        #: The owner (a WriteBehind key) of a store key.
        self.owner = owner
        self.held: dict[bytes, list[str]] = {}

    def __getitem__(self, key: str) -> V:
        return self.store[key]

    def __setitem__(self, key: str, value: V) -> None:
        self.store[key] = value

    def __delitem__(self, key: str) -> None:
        self.held.setdefault(self.owner(key), []).append(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)

    def flush(self, owner: bytes) -> None:
        """Do the deletes held for ``owner`` (its state was just written)."""
        for key in self.held.pop(owner, ()):
            self.store.pop(key, None)


class OwnedTable(faust.Table[bytes, Any]):
    """A table whose keys are ``<owner>/...``, kept in the owner's partition.

    Faust takes a table key's partition from the event being processed, and refuses a
    write or delete outside one ("Cannot modify table key from outside of stream
    iteration"). :class:`DeferredDeletes` deletes a session's blocks when its state is
    written, which for a quiet session happens as a commit starts (:class:`WriteOnCommit`),
    outside any event: the live worker crashed there on long sessions. Outside an event
    the partition is the owner's, chosen as the producer chooses it for the owner's key
    (murmur2 over the changelog's partition count), which is where the owner's events and
    state are; inside one, Faust's own choice (the event's partition, the same).
    """

    def partition_for_key(self, key: Any) -> int | None:
        if current_event() is not None:
            return super().partition_for_key(key)
        raw = key if isinstance(key, bytes) else str(key).encode()
        owner = raw.partition(b"/")[0]
        transport: Any = self.app.transport  # ours (pipeline.transport.driver.Transport)
        return cast(int, transport.partition_for(self.changelog_topic_name, owner))


class WriteOnCommit(Sensor):
    """Writes quiet sessions' states as a commit starts; all of them when the worker is
    rebalancing or stopping (Faust waits for every record to be acked then)."""

    def __init__(self, *stores: WriteBehind, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stores = stores

    def on_commit_initiated(self, consumer: Any) -> None:
        everything = consumer.app.rebalancing or consumer.should_stop
        for store in self.stores:
            if everything:
                store.write_all()
            else:
                store.write_due()
