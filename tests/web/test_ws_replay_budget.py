"""Issue 15, item 7: resume amplification. One athlete's sockets send resume frames
for a channel with a large history as fast as the rate limit lets them; what the edge
replays is bounded per frame and per user over time, and another athlete's live
latency (median, measured side by side without and with the attack) stays put."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from ids import uid

from pipeline.constants import LIVE_TOPIC
from pipeline.records import session_key
from pipeline.transport.streams import append, partition_for_key
from tests.web.test_web_socket import publish
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

ATHLETE, OTHER_ATHLETE = uid(1), uid(4)
ATTACKER_SESSION, VICTIM_SESSION = str(uid(5001)), str(uid(6001))
HISTORY = 40_000
CFG = EdgeConfig(max_replay=2_000, replay_rate=1_000.0, replay_burst=5_000.0)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.1f} ms, p99 {_p99(values) * 1000:.1f} ms"


async def _victim_latencies(
    edge: Any, redis: aioredis.Redis, seconds: float, hz: float = 50.0
) -> list[float]:
    """Publish the victim's events at ``hz`` for ``seconds``; their latencies (s)."""
    ws = await edge.ws(ATHLETE, "athlete")
    await ws.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}"})
    while (await ws.receive_json(timeout=5)).get("type") != "ack":
        pass
    p = partition_for_key(session_key(VICTIM_SESSION), 4)
    latencies: list[float] = []

    async def receive() -> None:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame.get("type") == "metrics_update":
                latencies.append(time.time() - frame["sent"])

    reader = asyncio.create_task(receive())
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        event = {"type": "metrics_update", "session_id": VICTIM_SESSION,
                 "user_id": str(ATHLETE), "timestamp": time.time(),
                 "metrics": {"heart_rate": 120, "cadence": None}, "sent": time.time()}  # fmt: skip
        key = session_key(VICTIM_SESSION)
        await append(redis, LIVE_TOPIC, p, [(key, json.dumps(event).encode(), None, 0)])
        await asyncio.sleep(1 / hz)
    await asyncio.sleep(0.5)
    reader.cancel()
    await ws.close()
    return latencies


async def _attacker(edge: Any, until: float, counts: dict[str, int]) -> None:
    """Resume the whole history of its user channel, again and again (reconnecting
    after a 4429); frames are counted, not parsed."""
    p = partition_for_key(session_key(ATTACKER_SESSION), 4)
    # The last 1,500 entries: each resume fits max_replay, and replays them all again.
    cursors = {f"live:user:{OTHER_ATHLETE}": [f"{p}:{edge.edge.tailer.positions[p] - 1_500}"]}
    while time.monotonic() < until:
        ws = await edge.ws(OTHER_ATHLETE, "athlete")
        try:
            while time.monotonic() < until and not ws.closed:
                await ws.send_json({"type": "resume", "cursors": cursors})
                counts["resumes"] += 1
                deadline = time.monotonic() + 0.05
                while time.monotonic() < deadline:
                    try:
                        msg = await ws.receive(timeout=max(0.001, deadline - time.monotonic()))
                    except TimeoutError:
                        break
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        counts["closes"] += 1
                        break
                    counts["frames"] += 1
                    if b'"rate_limited"' in msg.data.encode()[:200]:
                        counts["refused"] += 1
        except (ConnectionError, RuntimeError):
            counts["closes"] += 1
        finally:
            await ws.close()


async def test_resume_replay_is_bounded_and_spares_other_athletes(
    edge_factory: Any, redis_url: str
) -> None:
    edge = await edge_factory(CFG)
    for i in range(0, HISTORY, 5_000):
        batch = [{"type": "metrics_update", "session_id": ATTACKER_SESSION,
                  "user_id": str(OTHER_ATHLETE), "timestamp": time.time(),
                  "metrics": {"heart_rate": 120, "cadence": None, "seq": i + j}, "pad": "x" * 200}
                 for j in range(5_000)]  # fmt: skip
        await publish(redis_url, ATTACKER_SESSION, batch)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        quiet = await _victim_latencies(edge, redis, 2.0)
        registry = edge.edge.metrics.registry
        replayed_before = registry.get_sample_value("livecoach_ws_replayed_events_total") or 0
        counts = {"resumes": 0, "frames": 0, "closes": 0, "refused": 0}
        started = time.monotonic()
        attack_s = 3.0
        attackers = [
            asyncio.create_task(_attacker(edge, started + attack_s, counts)) for _ in range(5)
        ]
        attacked = await _victim_latencies(edge, redis, attack_s)
        await asyncio.gather(*attackers)
        elapsed = time.monotonic() - started
    finally:
        await redis.aclose()
    replayed = (registry.get_sample_value("livecoach_ws_replayed_events_total") or 0) - (
        replayed_before
    )
    bound = CFG.replay_burst + CFG.replay_rate * elapsed + CFG.max_replay
    print(
        f"attack {elapsed:.1f} s: {counts['resumes']} resume frames, {int(replayed)} events"
        f" replayed (bound {int(bound)}), {counts['refused']} refused, {counts['closes']}"
        f" closes; victim {_ms(quiet)} quiet, {_ms(attacked)} attacked"
        f" ({len(quiet)}, {len(attacked)} samples)"
    )
    assert counts["resumes"] > 20
    assert replayed <= bound
    # Relative to the same run's quiet figure (the machine is shared). The median, not
    # the p99: ~150 samples give a p99 that is one or two stalls of a loaded machine.
    # Measured with the budget lifted (EdgeConfig(max_replay=200_000, replay_rate=1e9,
    # replay_burst=1e9)): p50 1.3 -> 13.7 ms and 1.2 -> 12.4 ms; with it, 1.0 -> 1.3 ms.
    assert statistics.median(attacked) <= 3 * statistics.median(quiet) + 0.003
