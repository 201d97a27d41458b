"""``livecoach replay`` of a session recorded live through the real pipeline.

Device -> edge -> samples -> live and store workers (real processes) -> PostgreSQL.
The session is then replayed by the CLI from PostgreSQL and from the ``samples``
stream: the summary and the alerts (ids included) are those of the live run. A
what-if with a lower heart-rate ceiling gains alerts, and nothing of any replay
reaches a production stream, table or socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest
import redis

from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC, STORE_TOPIC
from pipeline.transport.keys import stream_key
from tests.test_agents_e2e import Workers
from tests.web.conftest import ATHLETE, COACH, Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = time.time() - 3600
#: (seconds, bpm): a ceiling of 170 is crossed once (the 180 block); 145, twice more.
PROFILE = [(60, 150.0), (60, 130.0), (60, 150.0), (40, 180.0), (60, 130.0)]
RULE = {"high_bpm": 170, "dwell_s": 3, "window_s": 10, "cooldown_s": 10}
TABLES = ("live_metrics", "live_alerts", "training_sessions", "live_training_sessions")


def _samples(sid: str) -> list[dict[str, Any]]:
    out, t = [], 0
    for seconds, bpm in PROFILE:
        for _ in range(seconds):
            out.append({"session_id": sid, "t": T0 + t, "heart_rate": bpm,
                        "power_w": 150.0 + (t % 7) * 10, "speed_m_s": 8.0,
                        "distance_m": 8.0 * t})  # fmt: skip
            t += 1
    return out


def _replay(redis_url: str, database_url: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env |= {"LIVECOACH_REDIS_URL": redis_url, "LIVECOACH_DATABASE_URL": database_url,
            "LIVECOACH_LOG_LEVEL": "WARNING"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "replay", "--json", *args],
        env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _production(redis_url: str, database_url: str) -> dict[str, Any]:
    """Lengths of every production stream partition and row counts of the tables."""
    client = redis.Redis.from_url(redis_url)
    try:
        streams = {
            (topic, p): client.xlen(stream_key(topic, p))
            for topic in (SAMPLES_TOPIC, LIVE_TOPIC, STORE_TOPIC)
            for p in range(4)
        }
    finally:
        client.close()
    with psycopg.connect(database_url) as conn:
        count = "SELECT count(*) FROM {}"
        rows = {t: conn.execute(count.format(t)).fetchone() for t in TABLES}
    return {"streams": streams, "rows": rows}


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (PostgreSQL keeps times to the microsecond)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


async def _wait_stored(database_url: str, sid: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT t.summary FROM live_training_sessions s"
                " JOIN training_sessions t ON t.id = s.training_session_id WHERE s.id = %s",
                (sid,),
            ).fetchone()
            n = conn.execute(
                "SELECT count(*) FROM live_metrics WHERE live_session_id = %s", (sid,)
            ).fetchone()
        if row is not None and n is not None and n[0] == 4 * sum(s for s, _ in PROFILE):
            return
        await asyncio.sleep(0.25)
    raise AssertionError("the store agent did not store the session in time")


async def test_replay_of_a_live_session_matches_it_and_stays_isolated(
    edge: Running, workers: Workers, redis_url: str, database_url: str
) -> None:
    url = edge.url(f"/api/v1/live/athletes/{ATHLETE}/thresholds")
    body = {"alert_settings": {"rules": {"heart_rate": RULE}}}
    async with edge.session.put(url, headers=edge.headers(COACH, "coach"), json=body) as resp:
        assert resp.status == 200, await resp.text()
    sid = await edge.start_session(ATHLETE)
    watcher = await edge.ws(COACH, "coach")
    await watcher.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    samples = _samples(sid)
    live_alerts: list[dict[str, Any]] = []
    for i in range(0, len(samples), 20):
        async with edge.session.post(
            edge.url(f"/api/v1/live/sessions/{sid}/update"),
            headers=edge.headers(ATHLETE, "athlete"), json={"samples": samples[i : i + 20]},
        ) as resp:  # fmt: skip
            assert resp.status == 202, await resp.text()
    async with edge.session.post(
        edge.url(f"/api/v1/live/sessions/{sid}/stop"), headers=edge.headers(), json={}
    ) as resp:
        assert resp.status == 200, await resp.text()
    live_summary = None
    deadline = time.monotonic() + 60
    while live_summary is None:
        frame = await watcher.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        if frame.get("type") == "alert":
            live_alerts.append(frame["alert"])
        elif frame.get("type") == "session_event" and frame.get("event") == "stop":
            live_summary = frame["summary"]
    assert len(live_alerts) == 1, live_alerts  # the 180 bpm block
    await _wait_stored(database_url, sid)
    before = _production(redis_url, database_url)
    # The watcher keeps reading (and answering the edge's heartbeat) during the replays.
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        while True:
            seen.append(await watcher.receive_json())

    watching = asyncio.ensure_future(watch())

    for source in ("database", "stream"):
        report = await asyncio.to_thread(_replay, redis_url, database_url, sid, "--source", source)
        [entry] = report["sessions"]
        replayed = entry["replayed"]
        print(source, "replay:", report["replay_s"], "s,", report["times_real_time"], "x")
        assert _same(replayed["summary"], live_summary), entry["summary_diff"]
        assert [a["id"] for a in replayed["alerts"]] == [a["id"] for a in live_alerts]
        assert _same(replayed["alerts"], entry["recorded"]["alerts"])
        diff = entry["alerts_diff"]
        assert (diff["gained"], diff["lost"], diff["moved"]) == ([], [], [])

    what_if = await asyncio.to_thread(
        _replay, redis_url, database_url, sid, "--set", "alerts.rules.heart_rate.high_bpm=145"
    )
    [entry] = what_if["sessions"]
    diff = entry["alerts_diff"]
    assert len(entry["replayed"]["alerts"]) > len(live_alerts), entry["replayed"]["alerts"]
    assert diff["gained"] and all(a["threshold"] == 145 for a in diff["gained"])
    assert _same(entry["recorded"]["summary"], live_summary)

    # Nothing of the three replays reached production: streams, tables, sockets.
    assert _production(redis_url, database_url) == before
    await asyncio.sleep(1.0)
    watching.cancel()
    leaked = [f for f in seen if f.get("type") in ("alert", "metrics_update", "session_event")]
    assert leaked == [], f"a replay reached a production socket: {leaked[:3]}"
    leftovers = redis.Redis.from_url(redis_url).keys("*replay-*")
    assert leftovers == []
    await watcher.close()
