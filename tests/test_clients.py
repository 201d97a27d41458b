"""Cancelling a task that talks to Redis ends it, and a stop ends tasks that ignore one.

With redis-py 8's default 5 s socket timeout, Python 3.11's ``asyncio.wait_for`` under
every command swallowed about 70 % of the cancels below; the task then ran on, and a
worker stopping on SIGTERM waited for it forever (CI, 2026-11-26).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import redis.asyncio as aioredis

from pipeline.transport.clients import SentinelRedis, client_options, redis_client
from pipeline.transport.tasks import cancel_and_wait

pytestmark = pytest.mark.integration

CANCELS = 300


async def _swallowed(client: aioredis.Redis, command: Callable[[], Awaitable[Any]]) -> int:
    """Tasks looping on ``command``, cancelled at random moments: how many ran on.

    Stops at the first task that runs on (ending it with a flag, as a cancel may not).
    """
    rng = random.Random(20261126)
    for _ in range(CANCELS):
        stop = asyncio.Event()

        async def loop(stop: asyncio.Event = stop) -> None:
            while not stop.is_set():
                await command()

        task = asyncio.create_task(loop())
        await asyncio.sleep(rng.uniform(0, 0.002))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if not done:
            stop.set()
            await asyncio.wait({task}, timeout=5)
            return 1
    return 0


async def test_cancelling_a_command_ends_the_task(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        # A cancel mid-command drops the connection, so most loops also reconnect: the
        # path where the default client lost the cancel.
        assert await _swallowed(client, lambda: client.get("lc-test-cancel")) == 0
        assert await _swallowed(client, lambda: client.xread({"lc-test-cancel": "0-0"})) == 0
    finally:
        await client.aclose()


async def test_a_pool_made_with_the_options_passes_cancels_on(redis_url: str) -> None:
    options = client_options()
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=4, **options)
    client = aioredis.Redis(connection_pool=pool)
    try:
        assert await _swallowed(client, lambda: client.get("lc-test-cancel")) == 0
    finally:
        await client.aclose()
        await pool.aclose()


async def test_cancel_and_wait_ends_a_task_that_swallows_cancels() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed >= 3:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, None), timeout=10)
    assert task.cancelled()
    assert swallowed == 3


async def test_cancel_and_wait_retrieves_what_a_task_raised() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # already done: no cancel, no "never retrieved" warning
    assert isinstance(task.exception(), RuntimeError)


@pytest.mark.parametrize("max_connections", [None, 4])
async def test_closing_a_client_closes_its_connections(
    redis_url: str, max_connections: int | None
) -> None:
    """Its pool is the client's own: a client that left its connections open on aclose()
    (the blocking pool's, until 2026-12-07) leaked a socket per connection at each stop of
    an edge, warned about by whichever test ran when they were collected."""
    client = redis_client(redis_url, max_connections=max_connections)
    await asyncio.gather(*(client.ping() for _ in range(3)))
    pool = client.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert connections and all(c.is_connected for c in connections)
    await client.aclose()
    assert not any(c.is_connected for c in connections)


async def test_a_sentinel_client_closes_its_sentinels_when_its_pool_fails(redis_url: str) -> None:
    """Closing the primary's pool re-raises a broken connection's error (after a
    failover); the sentinels' connections are closed all the same."""
    url = urlsplit(redis_url)
    secret = f"?sentinel_password={quote(url.password)}" if url.password else ""
    client = redis_client(f"redis+sentinel://{url.hostname}:{url.port}/mymaster{secret}")
    assert isinstance(client, SentinelRedis) and client.sentinel_manager is not None
    sentinel = client.sentinel_manager.sentinels[0]
    assert await sentinel.ping()  # a plain Redis answers as a sentinel would
    pool = sentinel.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert connections and all(c.is_connected for c in connections)

    async def broken() -> None:
        raise aioredis.ConnectionError("Connection closed by server.")

    client.connection_pool.aclose = broken  # type: ignore[method-assign]
    with pytest.raises(aioredis.ConnectionError):
        await client.aclose()
    assert not any(c.is_connected for c in connections)
