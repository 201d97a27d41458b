"""The asyncio Redis clients of livecoach: one factory for every process, same options.

:func:`redis_client` reads any URL :mod:`.urls` accepts: one server (``redis://``,
``rediss://``, ``unix://``), the primary of a Sentinel group (``redis+sentinel://``),
whose client follows a failover by itself (redis-py's ``SentinelConnectionPool`` asks
the sentinels for the primary's address at every new connection, and drops idle
connections to a former primary), or a Redis Cluster (``redis+cluster://``), whose
client (redis-py's ``RedisCluster``) routes each command by its key's slot, follows
``MOVED``/``ASK`` and refreshes its slot map after a failover. Workers, the edge and
the CLI all get their clients here.

A cluster client is typed as the one-server client it stands in for: it answers the
same commands as long as each command's keys share a slot (every key livecoach writes
carries a hash tag, see :mod:`.keys`). The few places that must act differently on a
cluster ask :func:`is_cluster`: reads of many partitions
(:func:`.streams.xread_streams`), durable appends (``WAIT`` on the node that took the
write, :mod:`.durable`), the server-run check per partition (:mod:`.epochs`) and the
edge's pub/sub (sharded, :mod:`web.presence`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from typing_extensions import TypeIs

from pipeline.redaction import redact_url
from pipeline.transport.errors import TRANSIENT_ERRORS, BrokerUnavailable
from pipeline.transport.tunables import without_tunables
from pipeline.transport.urls import RedisTarget, parse_redis_url

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


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel pool whose callers wait for a free connection instead of failing.

    ``SentinelConnectionPool`` only says where connections go (the current primary);
    ``BlockingConnectionPool`` only says how they are handed out: the two compose.
    """


class SentinelRedis(aioredis.Redis):
    """The client of a Sentinel group's primary; closing it closes the sentinels' too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        # The sentinels' clients are closed even when closing the primary's pool fails
        # (its disconnect re-raises the first error of a broken connection, as after a
        # failover): each was left with an open socket otherwise.
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.sentinel_manager is not None:
                await self.sentinel_manager.aclose()


def redis_client(
    url: str,
    *,
    retry: bool = True,
    retry_policy: Retry | None = None,
    max_connections: int | None = None,
    blocking_timeout_s: float = 10.0,
    **overrides: Any,
) -> aioredis.Redis:
    """An asyncio client for ``url`` with :func:`client_options` (not connected yet).

    ``retry_policy`` replaces the default retries; ``max_connections`` gives a blocking
    pool of that size (callers wait up to ``blocking_timeout_s`` for a free
    connection; on a cluster, that many connections per node, and a caller beyond
    them fails with ``MaxConnectionsError``: redis-py's cluster client has no blocking
    pool); ``overrides`` replace other options of :func:`client_options`.
    ``ValueError`` for a malformed URL. The transport's tunables in the URL's query
    are dropped (see :mod:`.tunables`).
    """
    url = without_tunables(url)
    target = parse_redis_url(url)
    options = {**client_options(retry=retry), **overrides}
    if retry_policy is not None:
        options["retry"] = retry_policy
    if target.kind == "sentinel":
        return _sentinel_client(target, options, max_connections, blocking_timeout_s)
    if target.kind == "cluster":
        # Typed as the client it stands in for (see the module's docstring).
        return cast(aioredis.Redis, _cluster_client(target, options, max_connections))
    if url.lower().startswith("unix://"):
        options.pop("socket_keepalive", None)  # a TCP option: a Unix socket refuses it
    if max_connections is None:
        return aioredis.Redis.from_url(url, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=blocking_timeout_s, **options
    )
    return aioredis.Redis.from_pool(pool)  # its aclose() closes the pool too


def _sentinel_client(
    target: RedisTarget,
    options: dict[str, Any],
    max_connections: int | None,
    blocking_timeout_s: float,
) -> aioredis.Redis:
    assert target.service is not None
    sentinel_kwargs = {**options, **target.sentinel_options()}
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)
    data_options: dict[str, Any] = {**options, **target.auth_options(), "db": target.db}
    if target.tls:
        data_options["ssl"] = True
    if max_connections is not None:
        data_options.update(max_connections=max_connections, timeout=blocking_timeout_s)
        pool_class: type[SentinelConnectionPool] = _BlockingSentinelPool
    else:
        pool_class = SentinelConnectionPool
    client = sentinel.master_for(
        target.service,
        redis_class=SentinelRedis,
        connection_pool_class=pool_class,
        **data_options,
    )
    assert isinstance(client, SentinelRedis)
    client.sentinel_manager = sentinel
    return client


def cluster_client(url: str, *, retry: bool = True, **overrides: Any) -> RedisCluster:
    """An asyncio Redis Cluster client for a ``redis+cluster://`` URL (not connected yet),
    typed as one (:func:`redis_client` gives the same client for any URL)."""
    url = without_tunables(url)
    target = parse_redis_url(url)
    if target.kind != "cluster":
        raise ValueError(f"expected a redis+cluster:// URL, got {redact_url(url)!r}")
    return _cluster_client(target, {**client_options(retry=retry), **overrides}, None)


def _cluster_client(
    target: RedisTarget, options: dict[str, Any], max_connections: int | None
) -> RedisCluster:
    options = {**options, **target.auth_options()}
    options.pop("health_check_interval", None)
    if max_connections is not None:
        options["max_connections"] = max_connections
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes], **options
    )


#: Client type -> whether it is a cluster client. ``isinstance`` against RedisCluster
#: goes through typing's Protocol check (0.76 us here, 0.10 us for this lookup), and
#: the fetch loop asks twice per read.
_CLUSTER_TYPES: dict[type, bool] = {}


def is_cluster(client: object) -> TypeIs[RedisCluster]:
    """Whether ``client`` (from :func:`redis_client`) talks to a Redis Cluster."""
    kind = type(client)
    answer = _CLUSTER_TYPES.get(kind)
    if answer is None:
        answer = _CLUSTER_TYPES[kind] = isinstance(client, RedisCluster)
    return answer


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
                log.warning("Redis at %s reachable after %d attempts", redact_url(url), attempt + 1)
            return client
        except TRANSIENT_ERRORS as exc:
            if loop.time() - started > deadline_s:
                await client.aclose()
                raise BrokerUnavailable(
                    f"Redis at {redact_url(url)} unreachable for {deadline_s:.0f} s: {exc}"
                ) from exc
            delay = min(5.0, 0.1 * 2**attempt)
            log.warning(
                "Redis at %s unreachable (%s); retrying in %.1f s", redact_url(url), exc, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
