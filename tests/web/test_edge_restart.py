"""Issue 15, item 18: delivery survives an edge killed with SIGKILL. A worker that
crashed publishes an alert again (same id); a client that saw it before the edge died
resumes on the restarted edge and must not get it twice."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ids import uid

from pipeline.records import session_key
from pipeline.settings import Settings
from pipeline.transport.streams import partition_for_key
from tests.web.edge_process import edge_process
from tests.web.test_web_socket import publish
from web.auth import mint_token
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

ATHLETE = uid(1)


def _alert_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"alert-{name}"))


#: Alert id -> the test's name for it ("A", "B", "C").
NAMES = {_alert_id(name): name for name in "ABC"}


def alert(session_id: str, name: str) -> dict[str, Any]:
    return {
        "type": "alert",
        "session_id": session_id,
        "user_id": str(ATHLETE),
        "timestamp": time.time(),
        "alert": {"id": _alert_id(name), "rule": "hr_zone", "severity": "warning",
                  "message": f"alert {name}", "metric": "heart_rate", "current": 180,
                  "threshold": 175},
    }  # fmt: skip


async def _until_quiet(ws: aiohttp.ClientWebSocketResponse, quiet_s: float = 0.5) -> list[Any]:
    frames = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return frames
        if msg.type != aiohttp.WSMsgType.TEXT:
            return frames
        frames.append(json.loads(msg.data))


def _same_partition(session_id: str, partitions: int = 4) -> str:
    """Another session id whose events go to the same partition of ``live``."""
    p = partition_for_key(session_key(session_id), partitions)
    n = 1000
    while partition_for_key(session_key(str(uid(n))), partitions) != p:
        n += 1
    return str(uid(n))


@pytest.mark.parametrize("away", [False, True], ids=["seen-then-restart", "away-15k-entries"])
async def test_a_repeated_alert_is_delivered_once_across_an_edge_restart(
    redis_url: str, database_url: str, users: None, tmp_path: Path, settings: Settings,
    away: bool,
) -> None:  # fmt: skip
    """seen-then-restart: the client got A and B, the edge is killed, the worker
    publishes B again and C, the client resumes on the restarted edge. away: the client
    left before A, and 15,000 entries of another session came between the first B and
    the second (a replay within max_replay, 20,000: the restarted edge's memory, rebuilt
    from the stream, holds both copies)."""
    token = mint_token(settings, user_id=ATHLETE, role="athlete", ttl_s=600)
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[str] = []  # alert ids, in the order the client got them
    with edge_process(redis_url, database_url, tmp_path) as edge:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{edge.base_url}/api/v1/live/sessions/start", headers=headers, json={}
            ) as resp:
                assert resp.status == 201, await resp.text()
                sid = str((await resp.json())["id"])
            channel = f"live:session:{sid}"
            url = f"{edge.base_url}/api/v1/live/ws"
            ws = await http.ws_connect(url, headers=headers)
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
            await ws.send_json({"type": "subscribe", "channel": channel})
            ack = await ws.receive_json(timeout=5)
            cursor = ack["cursor"][0]
            if away:
                await ws.close()
            await publish(redis_url, sid, [alert(sid, "A"), alert(sid, "B")])
            if away:
                other = _same_partition(sid)
                for _ in range(3):
                    filler = {"type": "typing", "session_id": other}
                    await publish(redis_url, other, [filler] * 5_000)
            else:
                frames = await _until_quiet(ws)
                seen += [NAMES[f["alert"]["id"]] for f in frames if f["type"] == "alert"]
                cursor = [f["offset"] for f in frames if "offset" in f][-1]
                assert seen == ["A", "B"]

            edge.kill9()
            # The worker crashed too: on replay it publishes B again, then C.
            await publish(redis_url, sid, [alert(sid, "B"), alert(sid, "C")])
            edge.start()

            ws = await http.ws_connect(url, headers=headers)
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
            await ws.send_json({"type": "resume", "cursors": {channel: cursor}})
            frames = await _until_quiet(ws)
            resumed = [f for f in frames if f["type"] == "resumed"]
            assert resumed and resumed[0]["recovered"] is True, frames
            seen += [NAMES[f["alert"]["id"]] for f in frames if f["type"] == "alert"]
            await ws.close()
    print(f"alert ids the client got: {seen}")
    assert sorted(seen) == ["A", "B", "C"]


async def test_a_resume_read_from_redis_drops_a_repeated_alert(
    edge_factory: Any, redis_url: str
) -> None:
    """The replay path that reads Redis (the range is older than the edge's memory of
    4 entries here) drops an alert id it has seen, as the live path does."""
    edge = await edge_factory(EdgeConfig(recent_per_partition=4))
    sid = await edge.start_session()
    channel = f"live:session:{sid}"
    ws = await edge.ws()
    await ws.send_json({"type": "subscribe", "channel": channel})
    while (ack := await ws.receive_json(timeout=5))["type"] != "ack":
        pass
    await ws.close()
    other = _same_partition(sid)
    await publish(redis_url, sid, [alert(sid, "A"), alert(sid, "B")])
    await publish(redis_url, other, [{"type": "typing", "session_id": other}] * 10)
    await publish(redis_url, sid, [alert(sid, "B"), alert(sid, "C")])
    ws = await edge.ws()
    await ws.send_json({"type": "resume", "cursors": {channel: ack["cursor"]}})
    frames = await _until_quiet(ws)
    await ws.close()
    seen = [NAMES[f["alert"]["id"]] for f in frames if f["type"] == "alert"]
    print(f"alert ids replayed from Redis: {seen}")
    assert [f["recovered"] for f in frames if f["type"] == "resumed"] == [True]
    assert sorted(seen) == ["A", "B", "C"]
