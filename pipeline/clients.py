"""The asyncio Redis clients of livecoach, all made with the same options."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def client_options() -> dict[str, Any]:
    """The options of every asyncio Redis client livecoach makes (pools take them too).

    ``socket_timeout=None`` matters: since redis-py 8 a client times out reads and
    writes after 5 s by default, and on Python 3.11 it does so with
    ``asyncio.wait_for``, which swallows a task's cancellation when the command
    completes in the same turn (tests/transport/test_cancellation.py measured 70 % of
    random cancels lost). A cancelled task then runs on, and a worker stopping on
    SIGTERM waits for it forever. Dead peers are found by TCP keep-alive and the
    health check instead; blocking reads carry their own ``BLOCK`` bound. It also
    spares each command the task and timer that ``wait_for`` costs.
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "socket_timeout": None,
    }


def redis_client(url: str) -> aioredis.Redis:
    """An asyncio client for ``url`` with :func:`client_options` (not connected yet)."""
    return aioredis.Redis.from_url(url, **client_options())
