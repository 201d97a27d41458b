"""GET /sessions/{id}/metrics?points=N: LTTB on the edge, over a real socket."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pipeline.downsample import lttb
from tests.ids import sid
from tests.stored_session import interval_samples, store_session
from tests.web.conftest import ATHLETE, OTHER_COACH, Running


async def _get(edge: Running, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with edge.session.get(edge.url(f"/api/v1/live/sessions/{path}"), headers=headers) as r:
        return r.status, await r.json()


async def test_points_keeps_the_lttb_samples_of_each_metric(
    edge: Running, database_url: str
) -> None:
    samples = interval_samples(sid(91), time.time() - 7200, duration_s=1800)
    session_id = await asyncio.to_thread(store_session, database_url, ATHLETE, samples)
    status, body = await _get(
        edge, f"{session_id}/metrics?metric=power,heart_rate&points=60", edge.headers()
    )
    assert status == 200, body
    assert body["downsampling"] == "lttb" and body["bucket_s"] is None
    power = [p for p in body["points"] if p["metric_type"] == "power"]
    assert len(power) == 60
    assert len([p for p in body["points"] if p["metric_type"] == "heart_rate"]) == 60
    xs = [s["t"] for s in samples]
    ys = [s["power_w"] for s in samples]
    assert [p["avg"] for p in power] == [ys[i] for i in lttb(xs, ys, 60)]
    # The peaks of the hard blocks survive; a bucket average would flatten them.
    assert max(p["max"] for p in power) == max(ys)
    assert power[0]["bucket"].endswith("Z") and power[0]["n"] == 1

    status, body = await _get(edge, f"{session_id}/metrics?points=2", edge.headers())
    assert status == 422 and body["errors"][0]["field"] == "points"
    status, body = await _get(edge, f"{session_id}/metrics?points=many", edge.headers())
    assert status == 422 and body["errors"][0]["field"] == "points"
    # Someone else's session: not found, as for every session endpoint.
    status, body = await _get(
        edge, f"{session_id}/metrics?points=60", edge.headers(OTHER_COACH, "coach")
    )
    assert status == 404
