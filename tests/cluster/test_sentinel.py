"""livecoach on a Sentinel group: the core path, then a kill -9 of the primary.

Real servers on loopback (1 primary, 1 replica, 3 sentinels from Debian's Redis 7), the
real live and store worker processes and a real edge, all given only the
``redis+sentinel://`` URL. After the primary is killed, the sentinels promote the
replica; the clients find it through the sentinels and the flow resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.core_path import T0, core_path, post_samples
from tests.cluster.failover import LOAD_CONFIG, post_through_a_kill, stored_samples
from tests.cluster.topologies import SentinelGroup
from tests.test_agents_e2e import Workers
from tests.web.conftest import Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_core_path_and_failover_on_sentinel(
    sentinel_group: SentinelGroup,
    edge_on: Callable[..., Any],
    workers_on: Callable[[str], Workers],
) -> None:
    """Durable acknowledgement off: the flow resumes; the loss window is measured."""
    url = sentinel_group.url
    workers_on(url)
    edge: Running = await edge_on(url, LOAD_CONFIG)
    watched = await core_path(edge)

    old_port = sentinel_group.primary.port
    promotion = _promotion(sentinel_group, old_port)
    outcome = await post_through_a_kill(
        edge,
        watched,
        sentinel_group.primary.kill,
        commands_probe=lambda: int(
            sentinel_group.primary.client().info("stats")["total_commands_processed"]
        ),
    )
    promoted_at = await promotion
    new_primary = sentinel_group.current_primary_port()
    assert new_primary == sentinel_group.replicas[0].port
    outcome.stored = await stored_samples(f"redis://127.0.0.1:{new_primary}/0", watched.sid)
    print(f"sentinel failover, durable ack off: {outcome.summary(promoted_at)}")
    assert outcome.flowing_at is not None
    assert outcome.flowing_at - promoted_at < 10


@pytest.mark.parametrize("sentinel_group", [2], indirect=True)
async def test_durable_ack_loses_no_acknowledged_sample_in_a_failover(
    sentinel_group: SentinelGroup,
    edge_on: Callable[..., Any],
    workers_on: Callable[[str], Workers],
) -> None:
    """LIVECOACH_DURABLE_ACK_MS on, two replicas: kill -9 of the primary under load
    loses no acknowledged sample, and metrics flow again within 10 s of the promotion."""
    url = sentinel_group.url
    workers_on(url)
    edge: Running = await edge_on(url, LOAD_CONFIG, durable_ack_ms=500)
    watched = await core_path(edge)

    old_port = sentinel_group.primary.port
    promotion = _promotion(sentinel_group, old_port)
    outcome = await post_through_a_kill(edge, watched, sentinel_group.primary.kill)
    promoted_at = await promotion
    new_primary = sentinel_group.current_primary_port()
    outcome.stored = await stored_samples(f"redis://127.0.0.1:{new_primary}/0", watched.sid)
    print(f"sentinel failover, durable ack 500 ms: {outcome.summary(promoted_at)}")
    assert outcome.acked_before_kill > 50, "too little load to judge"
    assert outcome.lost == []
    assert outcome.flowing_at is not None
    assert outcome.flowing_at - promoted_at < 10


async def test_durable_ack_without_a_replica_is_a_503_problem(
    redis_url: str, edge_on: Callable[..., Any]
) -> None:
    """The test Redis has no replica: no sample can be confirmed, none is acknowledged
    (nor a session start: its control record goes to the same topic)."""
    edge: Running = await edge_on(redis_url, durable_ack_ms=50)
    async with edge.session.post(
        edge.url("/api/v1/live/sessions/start"), headers=edge.headers(), json={}
    ) as resp:
        assert resp.status == 503
    sid = await (await edge_on(redis_url)).start_session()
    resp = await post_samples(edge, sid, 0, 1)
    assert resp.status == 503
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert "Retry-After" in resp.headers
    async with edge.session.post(
        edge.url(f"/api/v1/live/sessions/{sid}/update"),
        headers=edge.headers(),
        json={"samples": [{"session_id": sid, "t": T0, "heart_rate": 150.0}]},
    ) as again:
        problem = await again.json()
    assert again.status == 503 and problem["status"] == 503
    assert "0 of 1 replica(s) confirmed the append to samples within 50 ms" in problem["detail"]


def _promotion(group: SentinelGroup, old_port: int) -> asyncio.Task[float]:
    return asyncio.create_task(asyncio.to_thread(group.wait_for_promotion, old_port))
