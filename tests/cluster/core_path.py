"""The product's core path, run the same way on every Redis topology.

Session start, a threshold change, samples, ``metrics_update`` on a socket, an alert,
a chat message, and a resume after a reconnect: what a device, a coach and an athlete
do, over REST and WebSocket on a real edge with the real workers behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pipeline.models import iso_z
from tests.web.conftest import (
    ATHLETE,
    COACH,
    SAMPLES_T0,
    Running,
    frames_until,
    post_samples,
)

T0 = SAMPLES_T0


def is_metrics_at(t_index: int) -> Callable[[dict[str, Any]], bool]:
    stamp = iso_z(T0 + t_index)
    return lambda f: f.get("type") == "metrics_update" and f["timestamp"] == stamp


@dataclass
class Watched:
    """A session and the coach's socket on it, with the cursor of what it saw."""

    sid: str
    ws: aiohttp.ClientWebSocketResponse
    cursors: dict[str, str] = field(default_factory=dict)

    def saw(self, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            if "offset" in frame and "channel" in frame:
                self.cursors[frame["channel"]] = frame["offset"]


async def core_path(edge: Running, other_edge: Running | None = None) -> Watched:
    """Run the core path; the coach's socket stays open (on ``other_edge`` if given)."""
    watch_edge = other_edge or edge
    sid = await edge.start_session(ATHLETE)
    channel = f"live:session:{sid}"
    coach = await watch_edge.ws(COACH, "coach")
    await coach.send_json({"type": "subscribe", "channel": channel})
    athlete = await edge.ws(ATHLETE, "athlete")
    await athlete.send_json({"type": "subscribe", "channel": channel})
    watched = Watched(sid, coach)

    # A 140 bpm ceiling with a 3 s dwell: 150 bpm raises an alert within the window.
    rule = {"high_bpm": 140, "dwell_s": 3, "window_s": 10}
    async with edge.session.put(
        edge.url(f"/api/v1/live/athletes/{ATHLETE}/thresholds"),
        headers=edge.headers(COACH, "coach"),
        json={"alert_settings": {"rules": {"heart_rate": rule}}},
    ) as resp:
        assert resp.status == 200, await resp.text()

    for first in range(0, 20, 5):
        resp = await post_samples(edge, sid, first, first + 5)
        assert resp.status == 202, resp.status
    frames = await frames_until(coach, is_metrics_at(19), 60)
    updates = [f for f in frames if f["type"] == "metrics_update"]
    assert [u["timestamp"] for u in updates] == sorted(u["timestamp"] for u in updates)
    if not any(f["type"] == "alert" for f in frames):
        frames += await frames_until(coach, lambda f: f.get("type") == "alert", 30)
    alert = next(f for f in frames if f["type"] == "alert")["alert"]
    assert alert["rule"] == "heart_rate" and alert["threshold"] == 140
    watched.saw(frames)

    async with edge.session.post(
        edge.url("/api/v1/live/messages"),
        headers=edge.headers(COACH, "coach"),
        json={"session_id": sid, "text": "easy now", "client_message_id": f"c-{sid}"},
    ) as resp:
        assert resp.status == 201, await resp.text()
    frames = await frames_until(coach, lambda f: f.get("type") == "message", 30)
    assert frames[-1]["message"]["text"] == "easy now"
    watched.saw(frames)

    # Resume: the coach's phone sleeps while samples arrive (the athlete's socket sees
    # them); a new socket with the last cursor gets what was missed.
    await coach.close()
    resp = await post_samples(edge, sid, 20, 25)
    assert resp.status == 202
    await frames_until(athlete, is_metrics_at(24), 30)
    await athlete.close()
    ws = await watch_edge.ws(COACH, "coach")
    await ws.send_json({"type": "resume", "cursors": {channel: watched.cursors[channel]}})
    frames = await frames_until(ws, lambda f: f.get("type") == "resumed", 30)
    resumed = frames[-1]
    assert resumed["recovered"] is True, resumed
    replayed = [f["timestamp"] for f in frames if f["type"] == "metrics_update"]
    assert replayed and replayed[-1] == iso_z(T0 + 24), replayed
    watched.ws = ws
    watched.saw(frames)
    return watched
