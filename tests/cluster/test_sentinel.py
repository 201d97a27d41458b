"""livecoach on a Sentinel group: the core path, then a kill -9 of the primary.

Real servers on loopback (1 primary, 1 replica, 3 sentinels from Debian's Redis 7), the
real live and store worker processes and a real edge, all given only the
``redis+sentinel://`` URL. After the primary is killed, the sentinels promote the
replica; the clients find it through the sentinels and the flow resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.core_path import core_path, frames_until, is_metrics_at, post_samples
from tests.cluster.topologies import SentinelGroup
from tests.test_agents_e2e import Workers
from tests.web.conftest import Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_core_path_and_failover_on_sentinel(
    sentinel_group: SentinelGroup,
    edge_on: Callable[..., Any],
    workers_on: Callable[[str], Workers],
) -> None:
    url = sentinel_group.url
    workers_on(url)
    edge: Running = await edge_on(url)
    watched = await core_path(edge)

    # kill -9 the primary while a device keeps posting one sample every 100 ms.
    old_port = sentinel_group.primary.port
    killed_at = time.monotonic()
    sentinel_group.primary.kill()
    promotion = asyncio.create_task(asyncio.to_thread(sentinel_group.wait_for_promotion, old_port))
    refused = 0
    first_ack_at: float | None = None
    t = 25
    flowing_at: float | None = None
    frames: list[dict[str, Any]] = []
    while flowing_at is None:
        assert time.monotonic() - killed_at < 60, "no flow 60 s after the kill"
        resp = await post_samples(edge, watched.sid, t, t + 1)
        if resp.status == 202:
            first_ack_at = first_ack_at or time.monotonic()
            try:
                frames += await frames_until(watched.ws, is_metrics_at(t), 0.3)
                flowing_at = time.monotonic()
            except (AssertionError, TimeoutError):
                pass
            t += 1
        else:
            assert resp.status == 503, resp.status
            refused += 1
            await asyncio.sleep(0.1)
    promoted_s = await promotion  # measured from just after the kill
    assert first_ack_at is not None
    print(
        f"sentinel failover: promoted {promoted_s:.2f} s after the kill; "
        f"first 202 after {first_ack_at - killed_at:.2f} s ({refused} posts refused "
        f"with 503); live metrics on the socket again after {flowing_at - killed_at:.2f} s"
    )
    assert sentinel_group.current_primary_port() == sentinel_group.replicas[0].port
    assert flowing_at - killed_at < promoted_s + 10, "metrics not flowing 10 s after promotion"
