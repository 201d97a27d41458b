"""The asyncio Redis clients of livecoach, all made with the same options."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from pipeline.transport.errors import TRANSIENT_ERRORS, BrokerUnavailable
from pipeline.transport.tunables import without_tunables

log = logging.getLogger(__name__)

#: Start-up: how long to keep trying an unreachable Redis before giving up.
CONNECT_DEADLINE_S = 60.0


def client_options(*, retry: bool = True) -> dict[str, Any]:
    """The options of every asyncio Redis client livecoach makes (pools take them too).

    ``socket_timeout=None`` matters: since redis-py 8 a client times out reads and
    writes after 5 s by default, and on Python 3.11 it does so with
    ``asyncio.wait_for``, which swallows a task's cancellation when the command
    completes in the same turn (tests/transport/test_cancellation.py measured 70 % of
    random cancels lost). A cancelled task then runs on, and a worker stopping on
    SIGTERM waits for it forever. Dead peers are found by TCP keep-alive and the
    health check instead; blocking reads carry their own ``BLOCK`` bound. It also
    spares each command the task and timer that ``wait_for`` costs.

    ``retry=False`` gives a client whose connection errors reach the caller (the
    consumer's fetcher: a broken connection may mean a restarted server, to be checked
    before reading on).
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5 if retry else 0),
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "socket_timeout": None,
    }


def redis_client(url: str, *, retry: bool = True) -> aioredis.Redis:
    """An asyncio client for ``url`` with :func:`client_options` (not connected yet)."""
    return aioredis.Redis.from_url(without_tunables(url), **client_options(retry=retry))


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


async def connect(
    url: str, *, deadline_s: float = CONNECT_DEADLINE_S, retry: bool = True
) -> aioredis.Redis:
    """A client for ``url`` that answered PING; retries with backoff until the deadline.

    The client itself retries a command after a lost connection (five times, with
    backoff), which covers a Redis restart of a second or two.
    """
    client = redis_client(url, retry=retry)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for attempt in itertools.count():
        try:
            await client.ping()
            if attempt:
                log.warning("Redis at %s reachable after %d attempts", redact(url), attempt + 1)
            return client
        except TRANSIENT_ERRORS as exc:
            if loop.time() - started > deadline_s:
                await client.aclose()
                raise BrokerUnavailable(
                    f"Redis at {redact(url)} unreachable for {deadline_s:.0f} s: {exc}"
                ) from exc
            delay = min(5.0, 0.1 * 2**attempt)
            log.warning("Redis at %s unreachable (%s); retrying in %.1f s", redact(url), exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
