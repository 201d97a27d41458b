"""Two fetch loops on one consumer (a cancel that was swallowed), on a real Redis.

When Faust restarts its fetcher while the old loop's cancel was swallowed, both loops
would read from the same positions; one could deliver a later read first, and the
earlier read's messages were then dropped as already seen. The stale loop must read and
deliver nothing and end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar, copy_context
from types import SimpleNamespace
from typing import Any

import faust
import pytest
import redis.asyncio as aioredis
from faust.types import TP

from pipeline.transport import streams
from pipeline.transport.consumer import Consumer

pytestmark = pytest.mark.integration

tp = TP("events", 0)
N = 300
#: Which loop a delivery comes from (Faust delivers in tasks of their own).
LOOP: ContextVar[str] = ContextVar("loop", default="?")


class _Member:
    """A coordinator that holds its assignment."""

    generation = 1

    def may_fetch(self) -> bool:
        return True


async def _until(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_stale_drain_loop_reads_and_delivers_nothing(versioned_url: str) -> None:
    app = faust.App("lc-drain", broker=versioned_url, store="memory://")
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    r = aioredis.Redis.from_url(versioned_url)
    consumer._redis = r
    consumer._fetch_redis = aioredis.Redis.from_url(versioned_url)
    consumer._coordinator = _Member()  # type: ignore[assignment]
    consumer._assignment = {tp}
    consumer._position = {tp: 0}
    consumer._active_partitions = {tp}
    delivered: list[tuple[str, int]] = []

    async def callback(message: Any) -> None:
        delivered.append((LOOP.get(), message.offset))
        await asyncio.sleep(0)  # another loop may run between two messages

    consumer.callback = callback
    fetcher = SimpleNamespace(_stopped=asyncio.Event())

    def start(name: str) -> asyncio.Task[None]:
        context = copy_context()
        context.run(LOOP.set, name)
        return asyncio.create_task(consumer._drain_messages(fetcher), context=context)

    old = start("old")
    new: asyncio.Task[None] | None = None
    try:
        await _until(lambda: consumer._last_read_at > 0, 5, "the old loop's first read")
        # Faust restarted the fetcher; the old loop's cancel was swallowed.
        new = start("new")
        for first in range(0, N, 10):
            entries = [(b"k", b"%d" % n, None, 0) for n in range(first, first + 10)]
            await streams.append(r, tp.topic, tp.partition, entries)
            await asyncio.sleep(0.005)
        await _until(lambda: delivered and delivered[-1][1] == N - 1, 10, "the last entry")
        offsets = [o for _, o in delivered]
        assert offsets == list(range(N)), f"missing {sorted(set(range(N)) - set(offsets))[:10]}"
        assert {name for name, _ in delivered} == {"new"}
        await _until(old.done, 5, "the stale loop to end")
    finally:
        fetcher._stopped.set()
        for task in (old, new):
            if task is not None:
                task.cancel()
        await asyncio.gather(old, *(t for t in [new] if t), return_exceptions=True)
        await consumer._fetch_redis.aclose()
        await r.aclose()
