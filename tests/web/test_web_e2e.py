"""End to end: a real Faust worker, two edges, real Redis and PostgreSQL.

A device posts to edge A; the athlete's socket on edge B and the linked coach's socket
on edge A receive ``metrics_update`` and ``alert`` in order with offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from pipeline.embedded import free_port
from tests.ids import uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ATHLETE, COACH, OTHER_COACH = uid(1), uid(2), uid(3)


@pytest.fixture
def live_worker(redis_url: str, database_url: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")},
        "LIVECOACH_REDIS_URL": redis_url,
        "LIVECOACH_DATABASE_URL": database_url,
        "LIVECOACH_SAMPLES_PARTITIONS": "4",
        "LIVECOACH_LIVE_PARTITIONS": "4",
        "LIVECOACH_LOG_LEVEL": "WARNING",
        "LIVECOACH_WORKER_WEB_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "worker", "--app", "live"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _collect(ws: aiohttp.ClientWebSocketResponse, out: list[dict[str, Any]]) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(msg.json())


async def test_device_to_two_edges_through_the_worker(edge_factory: Any, live_worker: Any) -> None:
    edge_a = await edge_factory()
    edge_b = await edge_factory()
    rules = {"rules": {"heart_rate": {"high_bpm": 150, "dwell_s": 0, "cooldown_s": 600}}}
    async with edge_a.session.put(
        edge_a.url(f"/api/v1/live/athletes/{ATHLETE}/thresholds"),
        json={"alert_settings": rules},
        headers=edge_a.headers(),
    ) as resp:
        assert resp.status == 200, await resp.text()
    sid = await edge_a.start_session()

    athlete = await edge_b.ws()
    coach = await edge_a.ws(COACH, "coach")
    await athlete.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    await coach.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}"})
    stranger = await edge_a.ws(OTHER_COACH, "coach")
    await stranger.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    while (frame := await stranger.receive_json(timeout=5))["type"] != "error":
        pass
    assert frame["code"] == "not_found", frame  # as for a session that does not exist
    await stranger.close()

    got: dict[str, list[dict[str, Any]]] = {"athlete": [], "coach": []}
    readers = [asyncio.create_task(_collect(athlete, got["athlete"])),
               asyncio.create_task(_collect(coach, got["coach"]))]  # fmt: skip
    t0 = time.time() - 120
    url = edge_a.url(f"/api/v1/live/sessions/{sid}/update")
    deadline = time.monotonic() + 90
    i = 0
    while time.monotonic() < deadline:
        hr = 130 if i < 10 else 165
        async with edge_a.session.post(
            url,
            json={"t": t0 + i, "heart_rate": hr, "power_w": 220, "cadence": 90},
            headers=edge_a.headers(),
        ) as resp:
            assert resp.status == 202, await resp.text()
        i += 1
        await asyncio.sleep(0.05)
        done = all(
            any(f["type"] == "alert" for f in frames)
            and sum(f["type"] == "metrics_update" for f in frames) >= 5
            for frames in got.values()
        )
        if done:
            break
    for task in readers:
        task.cancel()
    await athlete.close()
    await coach.close()
    for who, frames in got.items():
        live = [f for f in frames if "offset" in f]
        kinds = {f["type"] for f in live}
        assert {"metrics_update", "alert"} <= kinds, (who, [f["type"] for f in frames][:20])
        offsets = [int(f["offset"].split(":")[1]) for f in live]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), who
        alert = next(f for f in live if f["type"] == "alert")
        assert alert["alert"]["metric"] == "heart_rate"
    assert [f["offset"] for f in got["athlete"] if "offset" in f][:5] == [
        f["offset"] for f in got["coach"] if "offset" in f
    ][:5]


async def test_a_stop_on_one_edge_closes_uploads_on_the_other(
    edge_factory: Any, live_worker: Any
) -> None:
    """Edge A keeps a session's owner for minutes; it learns of a stop made on edge B
    from the agents' ``session_event`` on ``live``, not from a cache expiry."""
    edge_a = await edge_factory()
    edge_b = await edge_factory()
    sid = await edge_a.start_session(ATHLETE)
    watcher = await edge_a.ws()
    await watcher.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    update = edge_a.url(f"/api/v1/live/sessions/{sid}/update")
    # The worker is up once the session's first metrics_update comes back.
    deadline = time.monotonic() + 60
    seen_metrics = False
    while not seen_metrics and time.monotonic() < deadline:
        async with edge_a.session.post(update, json={"t": time.time(), "heart_rate": 120},
                                       headers=edge_a.headers()) as resp:  # fmt: skip
            assert resp.status == 202, await resp.text()
        with contextlib.suppress(TimeoutError):
            while not seen_metrics:
                frame = await watcher.receive_json(timeout=0.5)
                seen_metrics = frame["type"] == "metrics_update"
    assert seen_metrics, "the worker never answered"
    await watcher.close()
    async with edge_b.session.post(
        edge_b.url(f"/api/v1/live/sessions/{sid}/stop"), headers=edge_b.headers(), json={}
    ) as resp:
        assert resp.status == 200, await resp.text()
    stopped = time.monotonic()
    statuses: list[int] = []
    while time.monotonic() - stopped < 2.0:
        async with edge_a.session.post(update, json={"t": time.time(), "heart_rate": 121},
                                       headers=edge_a.headers()) as resp:  # fmt: skip
            statuses.append(resp.status)
            if resp.status == 409:
                problem = await resp.json()
                assert "completed" in problem["detail"], problem
                break
        await asyncio.sleep(0.05)
    assert statuses[-1] == 409, f"edge A still took samples 2 s after the stop: {statuses}"
    assert set(statuses) <= {202, 409}, statuses
