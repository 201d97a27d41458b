"""``livecoach replay`` from PostgreSQL: selections, paced replays, bad flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.ids import sid, uid
from tests.stored_session import interval_samples, store_session

pytestmark = pytest.mark.integration


def _replay(redis_url: str, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env |= {"LIVECOACH_REDIS_URL": redis_url, "LIVECOACH_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "replay", *args],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_an_athletes_sessions_in_a_range_and_every_session(
    redis_url: str, database_url: str
) -> None:
    day = time.time() - 10 * 86400
    store_session(database_url, uid(81), interval_samples(sid(101), day, 300))
    store_session(database_url, uid(81), interval_samples(sid(102), day + 3600, 300))
    store_session(database_url, uid(81), interval_samples(sid(103), day - 86400, 300))
    store_session(database_url, uid(82), interval_samples(sid(104), day + 600, 300))
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(day - 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(day + 7200))
    mine = _report(_replay(redis_url, database_url, "--json", "--user", str(uid(81)),
                           "--since", since, "--until", until))  # fmt: skip
    assert [s["session_id"] for s in mine["sessions"]] == [sid(101), sid(102)]
    every = _report(_replay(redis_url, database_url, "--json", "--since", since, "--until", until))
    assert [s["session_id"] for s in every["sessions"]] == [sid(101), sid(104), sid(102)]
    assert all(s["replayed"]["summary"]["samples"] == 300 for s in every["sessions"])


def test_a_paced_replay_takes_its_time_and_computes_the_same(
    redis_url: str, database_url: str
) -> None:
    # The start is stamped to the millisecond, rounded up here: 0.3 ms after the first
    # sample. Paced, it must still come first.
    t0 = int(time.time()) - 7200 + 0.0007
    store_session(database_url, uid(83), interval_samples(sid(105), t0, 120))
    fast = _report(_replay(redis_url, database_url, "--json", sid(105)))
    started = time.monotonic()
    paced = _report(_replay(redis_url, database_url, "--json", sid(105), "--speed", "40"))
    took = time.monotonic() - started
    assert took >= 119 / 40, took  # 2 minutes of samples at 40 x real time: 3 s at least
    assert paced["replay_s"] >= 119 / 40
    assert paced["sessions"][0]["replayed"] == fast["sessions"][0]["replayed"]
    text = _replay(redis_url, database_url, sid(105), "--set", "profile.ftp_w=200")
    assert text.returncode == 0, text.stderr[-2000:]
    assert "x real time" in text.stdout and "mean_power" in text.stdout
    assert "alerts" in text.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "name a SESSION"),
        ([sid(1), "--set", "alerts"], "--set"),
        ([sid(1), "--set", "colour.red=1"], "--set"),
        ([sid(1), "--set", "profile.hr_max=5"], "hr_max"),
        ([sid(1), "--speed", "0"], "positive"),
        ([sid(1), "--since", "yesterday"], "ISO 8601"),
    ],
)
def test_bad_flags_are_one_line_errors(
    redis_url: str, database_url: str, args: list[str], words: str
) -> None:
    result = _replay(redis_url, database_url, *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def _append_session(redis_url: str, session_id: str, t0: float, ts_ms: int) -> None:
    """A session's records on the samples topic as the edge appends them, at ``ts_ms``."""
    import asyncio

    from pipeline.constants import SAMPLES_TOPIC
    from pipeline.records import session_key
    from pipeline.transport import streams
    from pipeline.transport.clients import redis_client

    user = str(uid(84))
    samples = interval_samples(session_id, t0, 60)
    records = [
        {"kind": "control", "session_id": session_id, "user_id": user, "ingest_ms": ts_ms,
         "action": "start", "at_ms": round(t0 * 1000), "payload": {}},
        {"kind": "samples", "session_id": session_id, "user_id": user, "ingest_ms": ts_ms,
         "samples": samples},
        {"kind": "control", "session_id": session_id, "user_id": user, "ingest_ms": ts_ms,
         "action": "stop", "at_ms": round((t0 + 60) * 1000), "payload": {}},
    ]  # fmt: skip

    async def run() -> None:
        client = redis_client(redis_url)
        try:
            partitions = await streams.declare_topic(client, SAMPLES_TOPIC, 4)
            key = session_key(session_id)
            entries = [(key, json.dumps(r).encode(), None, ts_ms) for r in records]
            partition = streams.partition_for_key(key, partitions)
            await streams.append(client, SAMPLES_TOPIC, partition, entries)
        finally:
            await client.aclose()

    asyncio.run(run())


def test_the_stream_source_reads_from_a_time_or_an_offset(
    redis_url: str, database_url: str
) -> None:
    old, new = time.time() - 7200, time.time() - 3600
    _append_session(redis_url, sid(106), old, int(old * 1000))
    _append_session(redis_url, sid(107), new, int(new * 1000))
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(new - 60))
    args = ("--json", "--source", "stream")
    both = _report(_replay(redis_url, database_url, *args, "--since", "2000-01-01T00:00Z"))
    assert [s["session_id"] for s in both["sessions"]] == [sid(106), sid(107)]
    assert all(s["replayed"]["summary"]["samples"] == 60 for s in both["sessions"])
    assert both["sessions"][0]["recorded"]["alerts"] == []  # none stored for it
    later = _report(_replay(redis_url, database_url, *args, "--since", since))
    assert [s["session_id"] for s in later["sessions"]] == [sid(107)]
    # From an offset past every partition's first three entries: the first session's
    # start is not read (its partition holds it at 0-2), so it is not replayed.
    skipped = _report(_replay(redis_url, database_url, *args, sid(106), "--from-offset", "3"))
    assert skipped["sessions"] == []
    whole = _report(_replay(redis_url, database_url, *args, sid(106), "--from-offset", "0"))
    assert [s["session_id"] for s in whole["sessions"]] == [sid(106)]
