"""livecoach on a Redis Cluster: the core path, a kill -9 of a primary, a slot moved.

Real servers on loopback (3 primaries with 1 or 2 replicas each, Debian's Redis 7,
made with ``redis-cli --cluster create``), the real live and store worker processes and
real edges, all given only the ``redis+cluster://`` URL of two seed nodes.

The core path runs on a Sentinel group too (the same test, parametrised): it is what
CI checks on both topologies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.constants import SAMPLES_TOPIC
from pipeline.records import session_key
from pipeline.transport.keys import stream_key
from pipeline.transport.streams import partition_for_key
from tests.cluster.core_path import core_path
from tests.cluster.failover import (
    LOAD_CONFIG,
    post_through_a_kill,
    stored_counts,
)
from tests.cluster.topologies import ClusterNodes, SentinelGroup, redis_binary
from tests.test_agents_e2e import PARTITIONS, Workers
from tests.web.conftest import Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(params=["cluster", "sentinel"])
def topology_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a 3-primary cluster, or of a Sentinel group (1 primary, 1 replica)."""
    if redis_binary() is None:
        pytest.skip("needs the distribution's redis-server (Redis 7)")
    servers = ClusterNodes(primaries=3) if request.param == "cluster" else SentinelGroup()
    try:
        yield servers.url
    finally:
        servers.stop()


async def test_core_path(
    topology_url: str, edge_on: Callable[..., Any], workers_on: Callable[[str], Workers]
) -> None:
    """Sessions, thresholds, samples, metrics, an alert, chat and a resume, through two
    edges (the coach watches on the second) and the workers."""
    workers_on(topology_url)
    edge: Running = await edge_on(topology_url)
    other: Running = await edge_on(topology_url)
    watched = await core_path(edge, other)
    await watched.ws.close()


def _samples_key(sid: str) -> str:
    """The stream of the session's ``samples`` partition."""
    return stream_key(SAMPLES_TOPIC, partition_for_key(session_key(sid), PARTITIONS))


@pytest.mark.parametrize(
    ("redis_cluster", "durable_ack_ms"), [(2, 500), (1, 0)], indirect=["redis_cluster"]
)
async def test_kill_9_of_the_sessions_primary(
    redis_cluster: ClusterNodes,
    durable_ack_ms: int,
    edge_on: Callable[..., Any],
    workers_on: Callable[[str], Workers],
) -> None:
    """kill -9 of the primary holding the session's ``samples`` partition while devices
    post, the workers process and a dashboard watches. Durable acknowledgement on (two
    replicas a primary, so that the promoted one still has a replica to confirm to):
    no acknowledged sample is lost; either way metrics flow again within 10 s of the
    promotion."""
    url = redis_cluster.url
    workers_on(url)
    edge: Running = await edge_on(url, LOAD_CONFIG, durable_ack_ms=durable_ack_ms)
    watched = await core_path(edge)
    key = _samples_key(watched.sid)
    victim = redis_cluster.primary_of(key)
    promotion = asyncio.create_task(
        asyncio.to_thread(redis_cluster.wait_for_promotion, key, victim.port)
    )
    outcome = await post_through_a_kill(edge, watched, victim.kill)
    promoted_at = await promotion
    counts = await stored_counts(url, watched.sid)
    outcome.stored = set(counts)
    outcome.duplicates = sum(1 for n in counts.values() if n > 1)
    print(
        f"cluster failover, durable ack {durable_ack_ms or 'off'} ms: "
        f"{outcome.summary(promoted_at)}"
    )
    assert outcome.acked_before_kill > 50, "too little load to judge"
    assert outcome.flowing_at is not None
    assert outcome.flowing_at - promoted_at < 10
    if durable_ack_ms:
        assert outcome.lost == []


@pytest.mark.parametrize("durable_ack_ms", [500])
async def test_a_slot_moved_while_devices_post(
    redis_cluster: ClusterNodes,
    durable_ack_ms: int,
    edge_on: Callable[..., Any],
    workers_on: Callable[[str], Workers],
) -> None:
    """The slot of the session's ``samples`` partition moves to another primary (as
    ``redis-cli --cluster reshard`` moves it) while devices post, durable ack on:
    nothing acknowledged is lost, and the stall is reported."""
    url = redis_cluster.url
    workers_on(url)
    edge: Running = await edge_on(url, LOAD_CONFIG, durable_ack_ms=durable_ack_ms)
    watched = await core_path(edge)
    key = _samples_key(watched.sid)
    source = redis_cluster.primary_of(key).port
    target = next(p for p in redis_cluster.primary_ports() if p != source)
    moved: list[float] = []

    def move() -> None:
        started = time.monotonic()
        keys = redis_cluster.move_slot(key, target)
        moved.extend([keys, time.monotonic() - started])

    outcome = await post_through_a_kill(edge, watched, move)
    assert redis_cluster.primary_of(key).port == target
    counts = await stored_counts(url, watched.sid)
    outcome.stored = set(counts)
    outcome.duplicates = sum(1 for n in counts.values() if n > 1)
    assert outcome.flowing_at is not None
    print(
        f"cluster resharding: {moved[0]:.0f} keys of the slot moved in {moved[1]:.2f} s "
        f"while devices posted; {len(outcome.acked)} samples acknowledged, "
        f"{outcome.refused} refused (503), {len(outcome.lost)} acknowledged and lost, "
        f"{outcome.duplicates} stored twice; longest wait between two 202s "
        f"{outcome.longest_gap_s():.2f} s; metrics of a sample sent after the move on the "
        f"socket {outcome.flowing_at - outcome.killed_at:.2f} s after it"
    )
    assert outcome.acked_before_kill > 50, "too little load to judge"
    assert outcome.lost == []
