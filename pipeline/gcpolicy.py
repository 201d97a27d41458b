"""Keep Python's full garbage collections off the live path (workers, edges, benchmarks).

A busy process holds a few million long-lived references (a worker every session's
windows, an edge every socket's buffers and subscriptions). A full collection walks
them all: 70-160 ms on a 2-core machine, several times a minute, because state that
lives a few seconds keeps promoting garbage to the oldest generation. Each such pause
was the p99 latency. So objects that live through start-up are frozen (never walked
again); the young generations are collected as usual, which frees what dies young,
cycles included, and reference counting frees everything acyclic; the oldest
generation is collected on a timer instead of by the allocation count.

A server (an edge, a worker) also collects its young generation less often than
CPython's default (every 700 net allocations). Under load nearly everything young is
alive when it is collected: the requests and frames in flight. In a 60 s ``bench e2e``
load the edge's young collections freed no object at all, yet took 6.5 s of its CPU a
minute (2,100 generation-0 and 190 generation-1 collections), the more the busier it
was, since a backlog means more in flight to walk each time. With
:data:`SERVER_YOUNG_THRESHOLD` they took 2.6 s, at 20-40 ms a collection (see
docs/benchmarks.md); a threshold of 10,000 took 0.9 s but paused 50 ms each time.
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
#: Net allocations between young collections in a server (see the module's text).
SERVER_YOUNG_THRESHOLD = 3000


def defer_full_collections(young: int | None = None) -> None:
    """Freeze what exists now and stop full collections triggered by allocations;
    ``young``: the young generation's threshold (None: left as it is)."""
    gc.collect()
    gc.freeze()
    current, middle, _ = gc.get_threshold()
    gc.set_threshold(current if young is None else young, middle, 1_000_000_000)


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
