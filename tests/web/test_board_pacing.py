"""The edge's own evidence of the leaderboard pacing (issue 20): on ``/metrics``, the gap
between two frames of a group written to one socket (none at 0.95 s or under, the
smallest gap seen) and a board's hops to the socket; ``emit_ms`` on the frames. A real
edge on a loopback socket over real Redis and PostgreSQL; the boards are written to
``live`` as the leaderboard agent writes them, faster than one a second (as after a
stall, or a resume), so only the edge's pacing keeps them apart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from pipeline.constants import group_channel
from pipeline.records import group_key
from tests.web.conftest import ATHLETE, COACH, OTHER_ATHLETE, frames_until
from tests.web.test_group_channel import board, new_group, publish, row, store_board, subscribe

pytestmark = pytest.mark.integration

METRICS_TOKEN = "metrics-token-of-some-length-0123456789"


async def scrape(edge: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The edge's ``/metrics`` as the bench reads it: (sample name, labels) -> value."""
    async with edge.session.get(
        edge.url("/metrics"), headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict[Any, float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


async def leaderboards(ws: aiohttp.ClientWebSocketResponse, until_s: float) -> list[Any]:
    """(arrival monotonic s, frame) of every leaderboard frame until ``until_s``."""
    got = []
    while (left := until_s - time.monotonic()) > 0:
        try:
            frame = await ws.receive_json(timeout=left)
        except TimeoutError:
            break
        if frame["type"] == "leaderboard":
            got.append((time.monotonic(), frame))
    return got


async def test_the_edge_shows_its_pacing_and_a_boards_hops(
    edge_factory: Any, redis_url: str, database_url: str
) -> None:
    edge = await edge_factory(metrics_token=SecretStr(METRICS_TOKEN))
    gid = await new_group(edge, database_url)
    a, b = ATHLETE, OTHER_ATHLETE
    await store_board(redis_url, gid, board(gid, 1, [row(a, 1, 10.0), row(b, 2, 5.0)]))
    before = await scrape(edge)
    assert value(before, "livecoach_leaderboard_gap_min_seconds") == float("inf")
    sockets = [await edge.ws(COACH, "coach"), await edge.ws()]  # the whole board, a window
    for ws in sockets:
        assert (await subscribe(ws, group_channel(gid)))["type"] == "ack"
        stored = (await frames_until(ws, lambda f: f["type"] == "leaderboard", 5))[-1]
        assert stored["seq"] == 1 and "offset" not in stored and "emit_ms" not in stored

    # 30 boards in 3 s (one every 0.1 s), then a burst of 5 at once, then the final
    # board: 36 boards, each socket gets one frame a second at most.
    key, seq = group_key(gid), 1
    readers = [asyncio.create_task(leaderboards(ws, time.monotonic() + 6.5)) for ws in sockets]
    for _ in range(30):
        seq += 1
        await publish(redis_url, key, [board(gid, seq, [row(a, 1, 10.0 + seq)])])
        await asyncio.sleep(0.1)
    burst = [board(gid, s, [row(b, 1, 20.0 + s)]) for s in range(seq + 1, seq + 6)]
    seq += 5
    await publish(redis_url, key, burst)
    seq += 1
    final = {**board(gid, seq, [row(b, 1, 50.0), row(a, 2, 45.0)], full=True), "final": True}
    await publish(redis_url, key, [final])
    received = await asyncio.gather(*readers)

    for frames in received:
        live = [(t, f) for t, f in frames if "offset" in f]
        assert len(live) == len(frames)
        assert 3 <= len(live) <= 6, [f["seq"] for _, f in live]  # ~3.5 s of boards, 1 a second
        assert live[-1][1]["seq"] == seq and live[-1][1]["final"] is True
        # The agent's send time (here the test's), from the stream entry, on every live
        # frame: after the board's newest sample, before it arrived.
        assert all(f["ingest_ms"] <= f["emit_ms"] <= time.time() * 1000 for _, f in live)

    after = await scrape(edge)
    gap = "livecoach_leaderboard_gap_seconds"
    gaps_live = value(after, f"{gap}_count", final="false")
    gaps_final = value(after, f"{gap}_count", final="true")
    # One gap per frame after each socket's first (the stored board), the final apart.
    written = value(after, "livecoach_ws_frames_sent_total", type="leaderboard")
    assert written >= sum(len(frames) for frames in received)
    assert gaps_live + gaps_final == written - len(sockets)
    assert gaps_final == len(sockets) and gaps_live >= 2 * len(sockets)
    # None at 0.95 s or under, by the edge's own clock at the write.
    assert value(after, f"{gap}_bucket", final="false", le="0.95") == 0
    assert value(after, f"{gap}_bucket", final="true", le="0.95") == 0
    assert 0.95 < value(after, "livecoach_leaderboard_gap_min_seconds") < 1.5

    hop = "livecoach_leaderboard_hop_seconds"
    # Read once per board and edge; written once per live frame and socket.
    assert value(after, f"{hop}_count", hop="ingest_to_emit") == seq - 1
    assert value(after, f"{hop}_count", hop="emit_to_read") == seq - 1
    live_frames = sum(1 for frames in received for _, f in frames if "offset" in f)
    assert value(after, f"{hop}_count", hop="read_to_queued") == live_frames
    assert value(after, f"{hop}_count", hop="queued_to_written") == live_frames
    # The stream hop is quick here; the pacing hold is what boards published faster
    # than one a second wait for (up to a second).
    assert value(after, f"{hop}_bucket", hop="emit_to_read", le="1.0") == seq - 1
    assert value(after, f"{hop}_sum", hop="read_to_queued") > 0.05
    assert value(after, f"{hop}_bucket", hop="read_to_queued", le="1.5") == live_frames
    for ws in sockets:
        await ws.close()
