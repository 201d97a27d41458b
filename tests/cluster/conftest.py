"""Fixtures of the Sentinel and Cluster tests: the topologies, the real worker processes
and a real edge on loopback, all pointed at the topology's URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from pipeline.settings import Settings, load_settings
from tests.cluster.topologies import ClusterNodes, SentinelGroup, redis_binary
from tests.test_agents_e2e import PARTITIONS, Workers
from tests.web.conftest import SECRET, Running
from tests.web.conftest import users as users
from web.app import create_app
from web.edge import EdgeConfig

needs_redis_binary = pytest.mark.skipif(
    redis_binary() is None, reason="needs the distribution's redis-server (Redis 7)"
)


@pytest.fixture
def sentinel_group(request: pytest.FixtureRequest) -> Iterator[SentinelGroup]:
    """1 primary, 1 replica (or ``indirect`` parametrize's count), 3 sentinels on
    loopback; killed and removed afterwards."""
    if redis_binary() is None:
        pytest.skip("needs the distribution's redis-server (Redis 7)")
    group = SentinelGroup(replicas=getattr(request, "param", 1))
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterNodes]:
    """3 primaries with 1 replica each (or ``indirect`` parametrize's count), on
    loopback; killed and removed afterwards."""
    if redis_binary() is None:
        pytest.skip("needs the distribution's redis-server (Redis 7)")
    nodes = ClusterNodes(primaries=3, replicas=getattr(request, "param", 1))
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def topology_settings(tmp_path: Path) -> Settings:
    return load_settings(
        jwt_secret=SECRET,
        data_dir=tmp_path,
        live_partitions=PARTITIONS,
        samples_partitions=PARTITIONS,
    )


@pytest.fixture
async def edge_on(
    topology_settings: Settings, database_url: str, users: None
) -> AsyncIterator[Callable[..., Any]]:
    """``await edge_on(redis_url, config, durable_ack_ms=...)``: a real edge on loopback
    over that Redis (settings fields as keywords)."""
    started: list[Running] = []

    async def make(redis_url: str, config: EdgeConfig | None = None, **settings: Any) -> Running:
        edge_settings = topology_settings.model_copy(update=settings)
        app = create_app(
            edge_settings,
            redis_url=redis_url,
            database_url=database_url,
            config=config or EdgeConfig(),
        )
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        running = Running(server, aiohttp.ClientSession(), edge_settings)
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.session.close()
        await asyncio.wait_for(asyncio.shield(running.server.close()), 15)


@pytest.fixture
def workers_on(database_url: str) -> Iterator[Callable[[str], Workers]]:
    """``workers_on(redis_url)``: the live and store worker processes on that Redis."""
    started: list[Workers] = []

    def make(redis_url: str) -> Workers:
        workers = Workers(redis_url, database_url)
        workers.start("live")
        workers.start("store")
        started.append(workers)
        return workers

    yield make
    for workers in started:
        workers.stop_all()
