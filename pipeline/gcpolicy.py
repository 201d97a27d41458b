"""Keep Python's full garbage collections off the live path (workers, edges, benchmarks).

A busy process holds a few million long-lived references (a worker every session's
windows, an edge every socket's buffers and subscriptions). A full collection walks
them all: 70-160 ms on a 2-core machine, several times a minute, because state that
lives a few seconds keeps promoting garbage to the oldest generation. Each such pause
was the p99 latency. So objects that live through start-up are frozen (never walked
again); the young generations are collected as usual, which frees what dies young,
cycles included, and reference counting frees everything acyclic; the oldest
generation is collected on a timer instead of by the allocation count.

The young generations keep CPython's threshold (700 net allocations). A server's
young collections free little under load (what is young is the requests and frames in
flight), so collecting them less often was tried: every 3,000 allocations in edges and
workers cut the edge's collector time from 6.5 to 2.6 s a minute, but each collection
then paused 20-40 ms, and in paired ``bench e2e`` runs against 700 it gained nothing
measurable (docs/benchmarks.md, 2026-12-08); at 10,000 or 50,000 the pauses were the
p99. So it is left as it is.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: How often a process under this policy runs a full collection.
FULL_GC_EVERY_S = 600.0


def defer_full_collections() -> None:
    """Freeze what exists now and stop full collections triggered by allocations."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000_000)


def full_collection() -> int:
    """One full collection now, logged; returns the objects it freed."""
    started = time.perf_counter()
    found = gc.collect()
    log.info(
        "full garbage collection: %d objects freed in %.0f ms",
        found, (time.perf_counter() - started) * 1000,
    )  # fmt: skip
    return found


async def full_collections(every_s: float = FULL_GC_EVERY_S) -> None:
    """Run :func:`full_collection` every ``every_s`` seconds until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        full_collection()


@contextmanager
def full_collections_deferred() -> Iterator[None]:
    """:func:`defer_full_collections` for a while (a benchmark's load generator), then
    the collector as it was."""
    previous = gc.get_threshold()
    defer_full_collections()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*previous)
