"""Group coordination against real Redis: leadership, generations, fenced commits."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
import redis.asyncio as aioredis

from pipeline.transport.coordination import CommitRefused, GroupCoordinator

pytestmark = pytest.mark.integration


def _member(r: aioredis.Redis, name: str, log: list[str]) -> GroupCoordinator:
    async def metadata() -> bytes:
        return name.encode()

    async def assign(metas: Mapping[str, bytes]) -> Mapping[str, bytes]:
        return {m: b"|".join(sorted(metas.values())) for m in metas}

    async def revoke() -> None:
        log.append(f"{name} revoke")

    async def assign_local(generation: int, raw: bytes) -> None:
        log.append(f"{name} gen {generation} {raw.decode()}")

    return GroupCoordinator(
        r, "g", name, session_timeout_s=1.0, metadata=metadata, assign=assign,
        revoke=revoke, assign_local=assign_local,
    )  # fmt: skip


async def _until(check: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_generations_and_fencing(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    log: list[str] = []
    a, b = _member(r, "a", log), _member(r, "b", log)
    try:
        a.start()
        await _until(lambda: a.generation > 0)
        await a.commit({"t:0": 5})
        assert (await a.committed(["t:0", "t:1"])) == {"t:0": 5, "t:1": None}
        first = a.generation
        b.start()
        await _until(lambda: a.generation > first and b.generation == a.generation)
        assert a.is_leader and not b.is_leader
        assert "a revoke" in log
        assert log[-1].endswith("a|b") and log[-2].endswith("a|b")
        await b.commit({"t:1": 7})
        # A member still on an old generation cannot commit (checked by the server).
        stale = a.generation
        await b.stop()
        await _until(lambda: a.generation > stale)
        a.generation = stale  # pretend a missed the new generation
        with pytest.raises(CommitRefused, match="no longer current"):
            await a.commit({"t:0": 9})
        assert (await a.committed(["t:0"])) == {"t:0": 5}
    finally:
        await a.stop()
        await b.stop()
        await r.aclose()


async def test_dead_member_is_evicted_after_its_lease(versioned_url: str) -> None:
    r = aioredis.Redis.from_url(versioned_url)
    log: list[str] = []
    a, b = _member(r, "a", log), _member(r, "b", log)
    try:
        a.start()
        b.start()
        await _until(lambda: a.generation > 0 and a.generation == b.generation)
        together = a.generation
        # b dies without leaving: its tasks stop, its keys stay until the lease lapses.
        for task in b._tasks:
            task.cancel()
        started = asyncio.get_running_loop().time()
        await _until(lambda: a.generation > together)
        assert asyncio.get_running_loop().time() - started < 3.0
        assert log[-1] == f"a gen {a.generation} a"
    finally:
        await a.stop()
        await r.aclose()
