"""Fenced identities and group epochs, against real Redis (coordinators in one process).

Each coordinator here stands for one process; "killing" one cancels its tasks without
leaving the group, as a ``kill -9`` would. Session timeout 1 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import redis.asyncio as aioredis

from pipeline.transport.coordination import GroupCoordinator
from pipeline.transport.errors import CommitRefused
from pipeline.transport.keys import group_key

pytestmark = pytest.mark.integration

SESSION_TIMEOUT_S = 1.0
PARTITIONS = 4


class Member:
    """A coordinator plus what it holds: partitions from its assignment, until revoked."""

    def __init__(self, r: aioredis.Redis, member_id: str, topics: str = "t") -> None:
        self.id = member_id
        self.topics = topics
        self.held: set[int] = set()
        self.runs: list[tuple[int, str]] = []  # (generation, assignment) taken
        self.failures_left = 0
        self.coordinator = GroupCoordinator(
            r, "g", member_id, session_timeout_s=SESSION_TIMEOUT_S,
            metadata=self._metadata, assign=_split, revoke=self._revoke,
            assign_local=self._assign_local,
        )  # fmt: skip

    async def _metadata(self) -> bytes:
        return self.topics.encode()

    async def _revoke(self) -> None:
        self.held = set()

    async def _assign_local(self, generation: int, raw: bytes) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise KeyError("topic of a dead process")  # what Faust's conductor raised
        topics, _, parts = raw.decode().partition("/")
        self.held = {int(p) for p in parts.split(",") if p}
        self.runs.append((generation, topics))

    def fetching(self) -> set[int]:
        """Partitions this member would read now."""
        return set(self.held) if self.coordinator.may_fetch() else set()

    def start(self) -> Member:
        self.coordinator.start()
        return self

    def kill(self) -> None:
        for task in self.coordinator._tasks:
            task.cancel()


async def _split(metas: Mapping[str, bytes]) -> Mapping[str, bytes]:
    """Partitions round-robin over the members; each learns the members' topics."""
    members = sorted(metas)
    topics = "|".join(sorted({m.decode() for m in metas.values()}))
    return {
        m: f"{topics}/{','.join(str(p) for p in range(i, PARTITIONS, len(members)))}".encode()
        for i, m in enumerate(members)
    }


class OverlapWatch:
    """Checks every 5 ms that no partition is read by two members at once."""

    def __init__(self, members: Callable[[], list[Member]]) -> None:
        self.members = members
        self.overlaps: list[tuple[int, list[str]]] = []
        self.last_overlap_at = 0.0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            readers: dict[int, list[str]] = {}
            for m in self.members():
                for p in m.fetching():
                    readers.setdefault(p, []).append(m.id)
            found = [(p, ids) for p, ids in readers.items() if len(ids) > 1]
            if found:
                self.overlaps += found
                self.last_overlap_at = asyncio.get_running_loop().time()
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _until(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _running(*members: Member) -> bool:
    """Every member runs the same, current generation and the partitions are all held."""
    gens = {m.coordinator.generation for m in members}
    held = [p for m in members for p in m.held]
    return len(gens) == 1 and 0 not in gens and sorted(held) == list(range(PARTITIONS))


async def _stop(*members: Member) -> None:
    for m in members:
        await m.coordinator.stop()


async def test_a_restarted_member_starts_a_new_generation(versioned_url: str) -> None:
    """Issue 12: a process restarted with the same member id after a kill -9."""
    r = aioredis.Redis.from_url(versioned_url)
    old = Member(r, "w1", topics="reply-of-old").start()
    new = Member(r, "w1", topics="reply-of-new")
    try:
        await _until(lambda: _running(old), 10, "the first process to run")
        before = old.coordinator.generation
        old.kill()
        started = asyncio.get_running_loop().time()
        new.start()
        await _until(lambda: _running(new), 10, "the restarted process to run")
        took_s = asyncio.get_running_loop().time() - started
        # It runs an assignment computed from its own subscription, in a new generation,
        # at once (a static id replaces its dead predecessor without the session timeout).
        assert new.runs[-1][1] == "reply-of-new", new.runs
        assert new.coordinator.generation > before, (new.runs, before)
        assert took_s < SESSION_TIMEOUT_S, took_s
    finally:
        await _stop(old, new)
        await r.aclose()


async def test_a_twin_with_the_same_member_id_is_fenced(versioned_url: str) -> None:
    """Issue 4: two live processes with one member id must not both process and commit."""
    r = aioredis.Redis.from_url(versioned_url)
    first = Member(r, "twin").start()
    second = Member(r, "twin")
    watch = OverlapWatch(lambda: [first, second])
    try:
        await _until(lambda: _running(first), 10, "the first process to run")
        await first.coordinator.commit({"t:0": 1})
        second.start()
        started = asyncio.get_running_loop().time()
        # The first cannot commit from the moment the second registered ...
        await _until(lambda: second.coordinator._state[0], 5, "the second's first heartbeat")
        with pytest.raises(CommitRefused, match="replaced"):
            await first.coordinator.commit({"t:0": 2})
        await _until(lambda: _running(second), 10, "the second process to run")
        await asyncio.sleep(3 * SESSION_TIMEOUT_S)  # what the first does meanwhile
        assert first.fetching() == set() and first.coordinator.fenced
        await second.coordinator.commit({"t:0": 3})
        assert await second.coordinator.committed(["t:0"]) == {"t:0": 3}
        # ... and stops reading at its next heartbeat (a live twin is a misconfiguration:
        # a static id from the web server's port cannot have one).
        if watch.overlaps:
            overlap_s = watch.last_overlap_at - started
            assert overlap_s < first.coordinator.heartbeat_interval_s + 0.3, overlap_s
    finally:
        await watch.stop()
        await _stop(first, second)
        await r.aclose()


async def _lose_group_state(r: aioredis.Redis) -> None:
    """What a Redis restarted without persistence, or failed over empty, shows us."""
    keys = [k async for k in r.scan_iter(match=group_key("g", "*"))]
    assert keys
    await r.delete(*keys)


async def test_group_state_lost_under_one_member(versioned_url: str) -> None:
    """Issue 3: the member rejoins a new group state and runs again."""
    r = aioredis.Redis.from_url(versioned_url)
    a = Member(r, "a").start()
    b = Member(r, "b").start()
    try:
        await _until(lambda: _running(a, b), 10, "two members to run")
        await b.coordinator.stop()  # generation 3 or more: above what a new state starts at
        await _until(lambda: _running(a), 10, "a alone to run")
        runs = len(a.runs)
        await _lose_group_state(r)
        await _until(lambda: len(a.runs) > runs and _running(a), 10, "a to run again")
        assert (await r.hget(group_key("g", "state"), "phase")) == b"stable"
    finally:
        await _stop(a, b)
        await r.aclose()


async def test_group_state_lost_under_two_members_never_overlaps(versioned_url: str) -> None:
    """Issue 3: after the loss, one member restarts; partitions are never read twice."""
    r = aioredis.Redis.from_url(versioned_url)
    a = Member(r, "a").start()
    b = Member(r, "b").start()
    b2 = Member(r, "b")
    watch = OverlapWatch(lambda: [a, b, b2])
    try:
        await _until(lambda: _running(a, b), 10, "two members to run")
        await _lose_group_state(r)
        b.kill()
        b.held = set()  # a dead process reads nothing
        b2.start()
        await _until(lambda: _running(a, b2), 15, "both to run in the new group state")
        await asyncio.sleep(2 * SESSION_TIMEOUT_S)  # observe: nothing moves for a while
        assert _running(a, b2)
        assert not watch.overlaps, watch.overlaps[:5]
    finally:
        await watch.stop()
        await _stop(a, b, b2)
        await r.aclose()


async def test_a_failed_assignment_is_not_left_idle(versioned_url: str) -> None:
    """Issue 14: applying an assignment failed once; the member sat "stable" and idle."""
    r = aioredis.Redis.from_url(versioned_url)
    a = Member(r, "a")
    a.failures_left = 1
    try:
        a.start()
        await _until(lambda: _running(a), 10, "a to run after one failed assignment")
    finally:
        await _stop(a)
        await r.aclose()
