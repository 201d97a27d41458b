"""Gap-free resume: a client drops off while events flow into ``live`` and resumes with
its cursors; it must get exactly the events it missed, none twice, then live ones."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC
from pipeline.records import session_key
from pipeline.transport.streams import append, partition_for_key, stream_id, stream_key
from tests.ids import uid
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

ATHLETE, COACH = uid(1), uid(2)
PARTITIONS = 4


def event(
    session_id: str, seq: int, kind: str = "metrics_update", user: uuid.UUID = ATHLETE
) -> bytes:
    """A ``live`` event as the agents publish it: a metrics_update or an alert."""
    body: dict[str, Any] = {
        "type": kind,
        "session_id": session_id,
        "user_id": str(user),
        "timestamp": time.time(),
        "ingest_ms": int(time.time() * 1000),
        "seq": seq,
    }
    if kind == "alert":
        body["alert"] = {"id": str(uuid.uuid4()), "rule": "hr_zone", "severity": "warning",
                         "message": f"HR high {seq}", "metric": "heart_rate", "current": 180,
                         "threshold": 175}  # fmt: skip
    else:
        body["metrics"] = {"heart_rate": 100 + seq % 80, "pace": None, "distance": None,
                           "cadence": None}  # fmt: skip
    return json.dumps(body).encode()


async def put(
    redis: aioredis.Redis,
    session_id: str,
    seqs: range,
    kind: str = "metrics_update",
    user: uuid.UUID = ATHLETE,
) -> list[int]:
    p = partition_for_key(session_key(session_id), PARTITIONS)
    now = int(time.time() * 1000)
    return await append(
        redis,
        LIVE_TOPIC,
        p,
        [(session_key(session_id), event(session_id, s, kind, user), None, now) for s in seqs],
    )


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet_s: float = 0.4) -> list[dict[str, Any]]:
    frames = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return frames
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frames.append(json.loads(msg.data))


@pytest.mark.parametrize("recent", [20_000, 4], ids=["from-memory", "from-redis"])
async def test_resume_replays_exactly_what_was_missed_while_events_flow(
    edge_factory: Any, redis_url: str, next_of: Any, recent: int
) -> None:
    # recent=4: the tailer's memory holds almost nothing, so replays come from XRANGE.
    edge = await edge_factory(EdgeConfig(recent_per_partition=recent))
    sid = await edge.start_session()
    other = await edge.start_session()  # same athlete: also on the user channel
    # Another athlete's sessions share the partitions: their events must never come.
    strangers = [str(uuid.uuid4()) for _ in range(2 * PARTITIONS)]
    redis = aioredis.Redis.from_url(redis_url)
    channel = f"live:session:{sid}"
    try:
        ws = await edge.ws(COACH, "coach")
        await ws.send_json({"type": "subscribe", "channels": [channel, f"live:user:{ATHLETE}"]})
        acks = [await next_of(ws, "ack"), await next_of(ws, "ack")]
        cursors: dict[str, dict[str, str]] = {
            a["channel"]: {c.split(":")[0]: c for c in a["cursor"]} for a in acks
        }
        await put(redis, sid, range(0, 10))
        await put(redis, other, range(0, 5))
        seen: list[tuple[int, int]] = []

        def note(frame: dict[str, Any]) -> None:
            if "offset" not in frame:
                return
            seen.append((frame["session_id"], frame["seq"]))
            p, _ = frame["offset"].split(":")
            for name in frame["channels"]:
                if name in cursors:
                    cursors[name][p] = frame["offset"]

        for frame in await drain(ws):
            note(frame)
        assert sorted(seen) == sorted(
            [(sid, i) for i in range(10)] + [(other, i) for i in range(5)]
        )
        await ws.close()

        # Events flow while the client is away, and keep flowing while it resumes.
        stop = asyncio.Event()

        async def producer() -> None:
            seq = 10
            while not stop.is_set():
                await put(redis, sid, range(seq, seq + 3))
                await put(redis, other, range(seq - 5, seq - 2))
                for stranger in strangers:
                    await put(redis, stranger, range(seq, seq + 3), user=uid(3))
                seq += 3
                await asyncio.sleep(0.005)
            produced["sid"] = seq
            produced["other"] = seq - 5

        produced: dict[str, int] = {}
        task = asyncio.create_task(producer())
        await asyncio.sleep(0.5)
        ws = await edge.ws(COACH, "coach")
        await ws.send_json(
            {"type": "resume", "cursors": {name: list(c.values()) for name, c in cursors.items()}}
        )
        await asyncio.sleep(0.3)
        stop.set()
        await task
        frames = await drain(ws, 0.6)
        resumed = [f for f in frames if f["type"] == "resumed"]
        assert {r["channel"] for r in resumed} == set(cursors)
        assert all(r["recovered"] is True for r in resumed), resumed
        events = [f for f in frames if "offset" in f]
        got = [(f["session_id"], f["seq"]) for f in events]
        assert len(got) == len(set(got)), "an event came twice"
        expected = [(sid, i) for i in range(10, produced["sid"])] + [
            (other, i) for i in range(5, produced["other"])
        ]
        assert sorted(got) == sorted(expected)
        # and in order per partition
        by_partition: dict[str, list[int]] = {}
        for f in events:
            p, o = f["offset"].split(":")
            by_partition.setdefault(p, []).append(int(o))
        for offsets in by_partition.values():
            assert offsets == sorted(offsets)
        await ws.close()
    finally:
        await redis.aclose()


async def test_cursor_older_than_retention_gets_a_snapshot(
    edge_factory: Any, redis_url: str, next_of: Any
) -> None:
    # The tailer's memory would otherwise still hold what retention dropped (and
    # recover it); keep it small so that the stream's retention decides.
    edge = await edge_factory(EdgeConfig(recent_per_partition=2))
    sid = await edge.start_session()
    redis = aioredis.Redis.from_url(redis_url)
    channel = f"live:session:{sid}"
    try:
        offsets = await put(redis, sid, range(0, 20))
        p = partition_for_key(session_key(sid), PARTITIONS)
        # retention drops the first 15 entries
        await redis.xtrim(
            stream_key(LIVE_TOPIC, p), minid=stream_id(offsets[15]), approximate=False
        )
        ws = await edge.ws()
        await ws.send_json({"type": "resume", "cursors": {channel: f"{p}:{offsets[3]}"}})
        resumed = await next_of(ws, "resumed")
        assert resumed["recovered"] is False, resumed
        assert resumed["snapshot"]["session"]["id"] == sid
        assert "latest_metrics" in resumed["snapshot"]
        assert resumed["cursor"] == [f"{p}:{offsets[-1]}"]
        # and it continues live from there
        more = await put(redis, sid, range(20, 22))
        got = [await next_of(ws, "metrics_update") for _ in range(2)]
        assert [g["offset"] for g in got] == [f"{p}:{o}" for o in more]
        # a cursor the stream still holds recovers
        await ws.close()
        ws = await edge.ws()
        await ws.send_json({"type": "resume", "cursors": {channel: f"{p}:{offsets[16]}"}})
        frames = await drain(ws)
        assert [f["seq"] for f in frames if "seq" in f] == [17, 18, 19, 20, 21]
        assert [f["recovered"] for f in frames if f["type"] == "resumed"] == [True]
        await ws.close()
    finally:
        await redis.aclose()


async def test_two_edges_device_on_one_dashboards_on_both(
    edge_factory: Any, redis_url: str, next_of: Any
) -> None:
    edge_a = await edge_factory()
    edge_b = await edge_factory()
    sid = await edge_a.start_session()
    athlete_b = await edge_b.ws()
    coach_a = await edge_a.ws(COACH, "coach")
    await athlete_b.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    await coach_a.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}"})
    await next_of(athlete_b, "ack")
    await next_of(coach_a, "ack")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await put(redis, sid, range(0, 5))
        await put(redis, sid, range(5, 6), kind="alert")
    finally:
        await redis.aclose()
    for ws in (athlete_b, coach_a):
        got = [await next_of(ws, "metrics_update") for _ in range(5)]
        assert [g["seq"] for g in got] == list(range(5))
        alert = await next_of(ws, "alert")
        assert alert["seq"] == 5
        offsets = [int(g["offset"].split(":")[1]) for g in [*got, alert]]
        assert offsets == sorted(offsets)
    await athlete_b.close()
    await coach_a.close()
