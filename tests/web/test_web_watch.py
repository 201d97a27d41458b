"""``livecoach watch`` (web/watch.py, written with ``livecoach up``) against a real edge."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC
from pipeline.records import session_key
from pipeline.transport.streams import append, partition_for_key
from tests.ids import uid
from web.watch import watch

pytestmark = pytest.mark.integration


async def test_watch_prints_metrics_and_alerts(edge: Any, redis_url: str) -> None:
    sid = await edge.start_session()
    out = io.StringIO()
    base = str(edge.server.make_url("/"))
    task = asyncio.create_task(
        watch(base, edge.token(uid(1), "athlete"), f"live:session:{sid}", count=2, out=out)
    )
    for _ in range(100):  # until subscribed
        if edge.edge.hub.channels.get(f"live:session:{sid}"):
            break
        await asyncio.sleep(0.02)
    sid_user = str(uid(1))
    redis = aioredis.Redis.from_url(redis_url)
    try:
        p = partition_for_key(session_key(sid), 4)
        now = int(time.time() * 1000)
        events = [
            {
                "type": "metrics_update",
                "session_id": sid,
                "user_id": sid_user,
                "timestamp": time.time(),
                "metrics": {
                    "heart_rate": 151,
                    "power": 240,
                    "pace": None,
                    "distance": 1000,
                    "cadence": 90,
                },
            },
            {
                "type": "alert",
                "session_id": sid,
                "user_id": sid_user,
                "timestamp": time.time(),
                "alert": {
                    "id": str(uid(77)),
                    "rule": "hr_zone",
                    "severity": "warning",
                    "message": "HR above zone",
                    "metric": "heart_rate",
                    "current": 181,
                    "threshold": 175,
                },
            },
        ]
        await append(
            redis,
            LIVE_TOPIC,
            p,
            [(session_key(sid), json.dumps(e).encode(), None, now) for e in events],
        )
    finally:
        await redis.aclose()
    assert await asyncio.wait_for(task, 10) == 0
    text = out.getvalue()
    assert "HR 151" in text and "P 240 W" in text
    assert "dist 1.00 km" in text  # the agents' 1000 m, in the wire's km
    assert "ALERT WARNING: HR above zone" in text


async def test_watch_prints_no_terminal_escape_codes(edge: Any) -> None:
    """Chat text is someone else's: its control characters are shown, not obeyed."""
    sid = await edge.start_session()
    out = io.StringIO()
    base = str(edge.server.make_url("/"))
    task = asyncio.create_task(
        watch(base, edge.token(uid(2), "coach"), f"live:session:{sid}", count=1, out=out)
    )
    for _ in range(100):  # until subscribed
        if edge.edge.hub.channels.get(f"live:session:{sid}"):
            break
        await asyncio.sleep(0.02)
    # Clear the screen, set the window title, fake a second line, reverse the text.
    text = "hi\x1b[2J\x1b]0;pwned\x07\n[1] ALERT CRITICAL: fake\u202e\x9b31m"
    async with edge.session.post(
        edge.url("/api/v1/live/messages"),
        json={"session_id": sid, "text": text},
        headers=edge.headers(),
    ) as resp:
        assert resp.status == 201, await resp.text()
    assert await asyncio.wait_for(task, 10) == 0
    printed = out.getvalue()
    assert printed.count("\n") == 1, printed  # one event, one line
    assert all(ch.isprintable() for ch in printed.rstrip("\n")), repr(printed)
    assert "hi\\x1b[2J\\x1b]0;pwned\\x07\\n[1] ALERT CRITICAL: fake\\u202e\\x9b31m" in printed


def _message(session_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "session_id": session_id,
        "user_id": str(uid(1)),
        "message": {
            "from": str(uid(2)),
            "text": text,
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, text)),
        },
    }


async def _publish(redis_url: str, session_id: str, events: list[dict[str, Any]]) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        p = partition_for_key(session_key(session_id), 4)
        now = int(time.time() * 1000)
        key = session_key(session_id)
        await append(
            redis, LIVE_TOPIC, p, [(key, json.dumps(e).encode(), None, now) for e in events]
        )
    finally:
        await redis.aclose()


async def test_watch_user_resumes_every_partition_of_two_sessions(
    edge: Any, redis_url: str
) -> None:
    """Issue 15 item 19: `watch --user` of an athlete with two sessions on different
    partitions, dropped twice (once before any event: the subscribe reply's position
    is all it has); every message printed once."""
    a = str(uid(1001))
    others = (str(uid(n)) for n in range(1002, 1100))
    b = next(s for s in others if partition_for_key(session_key(s), 4)
             != partition_for_key(session_key(a), 4))  # fmt: skip
    channel = f"live:user:{uid(1)}"
    out = io.StringIO()
    base = str(edge.server.make_url("/"))
    expected: list[str] = []

    async def subscribed() -> Any:
        for _ in range(500):
            conns = edge.edge.hub.channels.get(channel)
            if conns:
                return next(iter(conns))
            await asyncio.sleep(0.01)
        raise AssertionError("watch did not subscribe")

    async def gap(tag: str) -> None:
        """Drop the watcher's socket and publish on both sessions while it is away."""
        conn = await subscribed()
        await asyncio.sleep(0.3)  # the subscribe reply reaches the watcher
        conn.close_soon(4410, "dropped by the test")
        texts = {sid: [f"{tag}-{sid}-{i}" for i in range(3)] for sid in (a, b)}
        for sid, batch in texts.items():
            await _publish(redis_url, sid, [_message(sid, t) for t in batch])
            expected.extend(batch)
        assert not edge.edge.hub.channels.get(channel), "reconnected too early for the test"

    def messages() -> list[str]:
        lines = out.getvalue().splitlines()
        return [line.rsplit(": ", 1)[1] for line in lines if "] message from" in line]

    async def printed(n: int) -> list[str]:
        for _ in range(500):
            if len(messages()) >= n:
                break
            await asyncio.sleep(0.02)
        return messages()

    task = asyncio.create_task(watch(base, edge.token(uid(1), "athlete"), channel, out=out))
    try:
        await gap("before-any-event")
        await printed(6)
        for sid in (a, b):
            batch = [f"live-{sid}-{i}" for i in range(3)]
            await subscribed()
            await _publish(redis_url, sid, [_message(sid, t) for t in batch])
            expected.extend(batch)
        await printed(12)
        await gap("after-events")
        got = await printed(18)
        await asyncio.sleep(0.3)  # nothing more comes (no repeats)
        got = messages()
    finally:
        task.cancel()
    print(f"{len(got)} messages printed of {len(expected)}:\n{out.getvalue()}")
    assert sorted(got) == sorted(expected)
