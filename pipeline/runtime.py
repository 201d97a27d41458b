"""Resolve the Redis and PostgreSQL a command runs against.

Configured URLs are checked once at start-up, and an unreachable server becomes a
:class:`~pipeline.errors.ConfigError` naming the variable; unset URLs get embedded
servers (see :mod:`pipeline.embedded`) for the life of the block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import psycopg
import redis
from redis.exceptions import RedisClusterException

from pipeline.embedded import ServiceURLs, services
from pipeline.errors import ConfigError
from pipeline.redaction import redact_detail, redact_url
from pipeline.settings import Settings, env_name
from pipeline.transport.clients import redis_client

_CONNECT_TIMEOUT_S = 5


def check_redis(url: str, variable: str = env_name("redis_url")) -> None:
    """Raise ConfigError naming ``variable`` if the Redis at ``url`` does not answer PING."""
    try:
        asyncio.run(_ping_redis(url))
    except (redis.RedisError, RedisClusterException, OSError, ValueError) as exc:
        detail = redact_detail(str(exc), url)
        raise ConfigError(variable, f"cannot reach Redis at {redact_url(url)}: {detail}") from None


async def _ping_redis(url: str) -> None:
    # The client every process uses (one server, a Sentinel group's primary, a Cluster).
    client = redis_client(url, retry=False, socket_connect_timeout=_CONNECT_TIMEOUT_S)
    try:
        await client.ping()
    finally:
        await client.aclose()


def check_postgres(url: str, variable: str = env_name("database_url")) -> None:
    """Raise ConfigError naming ``variable`` if PostgreSQL at ``url`` refuses a login."""
    try:
        with psycopg.connect(url, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            variable, f"cannot reach PostgreSQL at {redact_url(url)}: {redact_detail(detail, url)}"
        ) from None


@contextlib.contextmanager
def resolved_services(settings: Settings, *, redis: bool = True) -> Iterator[ServiceURLs]:
    """URLs of reachable servers: the configured ones, or embedded ones started here.

    With ``redis=False`` (a command that needs only the database) no Redis is checked
    or started, and the Redis URL yielded is the configured one or empty.
    """
    if redis and settings.redis_url is not None:
        check_redis(settings.redis_url)
    if settings.database_url is not None:
        check_postgres(settings.database_url)
    with services(
        settings.data_dir,
        redis_url=settings.redis_url if redis else (settings.redis_url or ""),
        database_url=settings.database_url,
    ) as urls:
        yield urls
