"""Client times outside the accepted window around the server's clock are a 422 naming
the field, and nothing of the request is written (issue 15 item 15): a real edge over
real Redis and PostgreSQL, with the default window of the settings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pipeline.constants import SAMPLES_TOPIC
from pipeline.settings import Settings, load_settings
from pipeline.transport.streams import read
from tests.web.conftest import SECRET
from web.clock import ClockWindow

pytestmark = pytest.mark.integration

DAY_S = 86_400.0
#: The defaults, given explicitly: the suite widens the past for its fixed sample times.
PAST_S, FUTURE_S = 7 * DAY_S, 300.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        jwt_secret=SECRET, data_dir=tmp_path, live_partitions=4, samples_partitions=4,
        client_time_past_s=PAST_S, client_time_future_s=FUTURE_S,
    )  # fmt: skip


def test_the_window_defaults_are_the_documented_ones() -> None:
    fields = Settings.model_fields
    assert fields["client_time_past_s"].default == PAST_S
    assert fields["client_time_future_s"].default == FUTURE_S
    window = ClockWindow(PAST_S, FUTURE_S)
    now = 1_800_000_000.0
    assert window.refusal(now, now) is None
    assert window.refusal(now - PAST_S, now) is None
    assert window.refusal(now + FUTURE_S, now) is None
    assert window.refusal(now - PAST_S - 1, now) is not None
    assert window.refusal(now + FUTURE_S + 1, now) is not None
    assert window.refusal(float("nan"), now) is not None


async def _post(edge: Any, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with edge.session.post(
        edge.url(f"/api/v1/live{path}"), json=body, headers=edge.headers()
    ) as resp:
        return resp.status, await resp.json()


async def _samples_in_stream(redis_url: str) -> int:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        count = 0
        for partition in range(4):
            for _, (_, value, _, _) in await read(redis, SAMPLES_TOPIC, partition, 0):
                count += value is not None and b'"kind":"samples"' in value
        return count
    finally:
        await redis.aclose()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"t": 946_684_800.0, "heart_rate": 120}, "t"),  # 2000: an unset clock
        ({"t": "2099-01-01T00:00:00Z", "heart_rate": 120}, "t"),
        ({"samples": [{"t": "now", "heart_rate": 120}, {"t": 4_000_000_000, "heart_rate": 121}]},
         "samples[1].t"),
        ({"metrics": {"heart_rate": 150}, "timestamp": "2000-01-01T00:00:00Z"}, "t"),
    ],
)  # fmt: skip
async def test_a_sample_out_of_the_window_is_a_422_and_stores_nothing(
    edge: Any, redis_url: str, body: Any, field: str
) -> None:
    sid = await edge.start_session()
    now = time.time()
    if "samples" in body:  # the first sample of the batch is a good one
        body = {"samples": [{**body["samples"][0], "t": now}, body["samples"][1]]}
    status, problem = await _post(edge, f"/sessions/{sid}/update", body)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == field, problem
    assert "server's clock" in problem["errors"][0]["message"], problem
    assert await _samples_in_stream(redis_url) == 0  # not even the good sample of the batch
    # Within the window (a day ago: a device that was offline) it is accepted.
    status, body = await _post(edge, f"/sessions/{sid}/update", {"t": now - DAY_S, "power_w": 1})
    assert status == 202, body


async def test_samples_of_2000_and_2099_over_the_socket_are_refused(
    edge: Any, next_of: Any
) -> None:
    sid = await edge.start_session()
    ws = await edge.ws()
    for t in (946_684_800.0, 4_070_908_800.0):
        frame = {"type": "metrics_update", "id": 1, "session_id": sid,
                 "samples": [{"t": t, "heart_rate": 120}]}  # fmt: skip
        await ws.send_json(frame)
        error = await next_of(ws, "error")
        assert error["code"] == "invalid" and "[0].t" in error["message"], error
    await ws.send_json({"type": "metrics_update", "id": 2, "session_id": sid,
                        "samples": [{"t": time.time(), "heart_rate": 120}]})  # fmt: skip
    assert (await next_of(ws, "ack"))["accepted"] == 1
    await ws.close()


@pytest.mark.parametrize("at_ms", [10**17, 1_000, 4_070_908_800_000, 10**400])
async def test_a_stop_at_a_time_out_of_the_window_is_a_422(edge: Any, at_ms: int) -> None:
    sid = await edge.start_session()
    status, problem = await _post(edge, f"/sessions/{sid}/stop", {"at_ms": at_ms})
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "at_ms", problem
    # The session is still running: the refused stop changed nothing.
    async with edge.session.get(edge.url(f"/api/v1/live/sessions/{sid}"),
                                headers=edge.headers()) as resp:  # fmt: skip
        assert (await resp.json())["status"] == "active"
    status, row = await _post(edge, f"/sessions/{sid}/stop", {"at_ms": int(time.time() * 1000)})
    assert status == 200 and row["status"] == "completed", row
