"""``livecoach bench groups``: one race of N athletes at 1 Hz through the real workers.

Every athlete's session is in one group (a race); each posts one sample a second,
spread evenly over the second, as ``bench pipeline`` does. Measured on the live
stream, per run: the sample-to-leaderboard latency (a board's arrival on ``live``
minus its ``ingest_ms``, the newest sample acceptance time it includes), boards per
second of the group and the shortest time between two of them, and the last board's
standings against the offline computation of the same samples
(:mod:`bench.groups_offline`). Baseline in the same run: a raw XADD to XREAD round trip
at the athletes' rate. Bounded: ``duration_s`` of load, then at most 60 s of waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import orjson
import psycopg
import redis.asyncio as aioredis
import uvloop

from bench.groups_offline import Track, race_standings
from bench.pipeline import (
    PARTITIONS,
    _append_many,
    _percentiles,
    _redis_version,
    _sessions,
    _until_processing,
    _Workers,
    raw_roundtrip_ms,
)
from bench.servers import private_servers
from pipeline.constants import GROUPS_TOPIC, LIVE_TOPIC, group_board_key
from pipeline.gcpolicy import full_collections_deferred
from pipeline.models import OFFLINE_USER_ID
from pipeline.records import group_key
from pipeline.settings import Settings
from pipeline.transport import streams
from pipeline.transport.clients import redis_client

#: The owner of the background sessions (bench.pipeline's bench user).
_BG_USER = str(OFFLINE_USER_ID)
#: gap_s from the leader's bounded history may differ from the offline figure by this.
GAP_S_TOLERANCE = 1.0


def _setup(database_url: str, athletes: int) -> tuple[str, list[tuple[str, str]], str]:
    """A coach's race, ``athletes`` athletes with a session each in it, and a probe."""
    with psycopg.connect(database_url) as conn:
        coach = conn.execute(
            "INSERT INTO users (name, role) VALUES ('coach', 'coach') RETURNING id"
        ).fetchone()
        assert coach is not None
        users = conn.execute(
            "INSERT INTO users (name) SELECT 'athlete ' || n FROM generate_series(1, %s) n"
            " RETURNING id",
            (athletes + 1,),
        ).fetchall()
        group = conn.execute(
            "INSERT INTO live_groups (coach_id, name, sport, kind, starts_at)"
            " VALUES (%s, 'bench race', 'ride', 'race', now()) RETURNING id",
            (coach[0],),
        ).fetchone()
        assert group is not None
        pairs = []
        for (user,) in users:
            row = conn.execute(
                "INSERT INTO live_training_sessions (user_id) VALUES (%s) RETURNING id", (user,)
            ).fetchone()
            assert row is not None
            pairs.append((str(user), str(row[0])))
        *members, probe = pairs
        for user, session in members:
            conn.execute(
                "INSERT INTO live_group_members (group_id, athlete_id, session_id, joined_at)"
                " VALUES (%s, %s, %s, now())",
                (group[0], user, session),
            )
        return str(group[0]), members, probe[1]


def _speed(n: int) -> float:
    return 6.0 + (n * 37 % 100) / 25.0  # 6 to 10 m/s, spread over the field


async def _tail_boards(
    client: aioredis.Redis,
    group: str,
    stop: asyncio.Event,
    boards: list[tuple[float, dict[str, Any]]],
    sent_ms: list[int],
) -> None:
    partition = streams.partition_for_key(group_key(group), PARTITIONS)
    position = await streams.highwater(client, LIVE_TOPIC, partition) - 1
    stream = streams.stream_key(LIVE_TOPIC, partition)
    while not stop.is_set():
        reply: Any = await client.xread(
            {stream: streams.stream_id(position)}, count=5000, block=200
        )
        now_ms = time.time() * 1000
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                position = streams.offset_of(entry_id)
                _, value, _, timestamp_ms = streams.decode_entry(fields)
                event = orjson.loads(value or b"{}")
                if event.get("type") == "leaderboard" and event.get("group_id") == group:
                    boards.append((now_ms, event))
                    sent_ms.append(timestamp_ms)  # when the agent sent it


async def _tail_updates(
    client: aioredis.Redis, sessions: set[str], stop: asyncio.Event, latencies: list[float]
) -> None:
    """The sample-to-update latency of ``sessions``' ``metrics_update`` events."""
    positions = {p: await streams.highwater(client, LIVE_TOPIC, p) - 1 for p in range(PARTITIONS)}
    keys = {streams.stream_key(LIVE_TOPIC, p).encode(): p for p in range(PARTITIONS)}
    while not stop.is_set():
        reply: Any = await client.xread(
            {streams.stream_key(LIVE_TOPIC, p): streams.stream_id(o) for p, o in positions.items()},
            count=5000,
            block=200,
        )
        now_ms = time.time() * 1000
        for key, entries in reply or []:
            for entry_id, fields in entries:
                positions[keys[key]] = streams.offset_of(entry_id)
                event = orjson.loads(streams.decode_entry(fields)[1] or b"{}")
                if event.get("type") == "metrics_update" and event.get("session_id") in sessions:
                    latencies.append(now_ms - event["ingest_ms"])


async def _loop_stalls(port: int) -> dict[str, Any]:
    """The live worker's event-loop stalls (agents.observability's probe), from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    body = (await reader.read()).partition(b"\r\n\r\n")[2].decode()
    writer.close()
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(body):
        if family.name == "livecoach_worker_loop_stall_max_seconds":
            out["max_ms"] = round(family.samples[0].value * 1000, 1)
        elif family.name == "livecoach_worker_loop_stall_seconds":
            buckets = {s.labels["le"]: s.value for s in family.samples if "le" in s.labels}
            out["over_25ms"] = int(buckets["+Inf"] - buckets["0.025"])
            out["over_100ms"] = int(buckets["+Inf"] - buckets["0.1"])
    return out  # counts since the worker started; max since the scrape before


async def _race(
    redis_url: str,
    group: str,
    members: list[tuple[str, str]],
    duration_s: int,
    start_s: float,
    background: list[str] | None = None,
    metrics_port: int | None = None,
) -> dict[str, Any]:
    background = background or []
    client = redis_client(redis_url)
    tail_client = redis_client(redis_url)
    updates_client = redis_client(redis_url)
    boards: list[tuple[float, dict[str, Any]]] = []
    sent_ms: list[int] = []
    stop = asyncio.Event()
    tail = asyncio.create_task(_tail_boards(tail_client, group, stop, boards, sent_ms))
    if metrics_port is not None:
        await _loop_stalls(metrics_port)  # the worker's start is not the race's
    update_ms: list[float] = []
    tail_updates = asyncio.create_task(
        _tail_updates(updates_client, set(background), stop, update_ms)
    )
    await asyncio.sleep(0.5)
    t0 = float(int(time.time()))
    tracks: dict[str, list[tuple[float, float]]] = {user: [] for user, _ in members}
    n = len(members)
    tick_s = 0.01
    start = time.perf_counter()
    for second in range(duration_s):
        for tick in range(int(1 / tick_s)):
            due = start + second + tick * tick_s
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            lo, hi = int(tick * n * tick_s), int((tick + 1) * n * tick_s)
            batch = []
            for i in range(lo, hi):
                user, session = members[i]
                t = t0 + second + 1
                distance = round(_speed(i) * (second + 1), 1)
                tracks[user].append((t, distance))
                record = {"kind": "samples", "session_id": session, "user_id": user,
                          "ingest_ms": int(time.time() * 1000),
                          "samples": [{"session_id": session, "t": t, "speed_m_s": _speed(i),
                                       "distance_m": distance,
                                       "power_w": 150.0 + i % 150}]}  # fmt: skip
                batch.append((session, orjson.dumps(record)))
            nb = len(background)
            for i in range(int(tick * nb * tick_s), int((tick + 1) * nb * tick_s)):
                session = background[i]
                record = {"kind": "samples", "session_id": session, "user_id": _BG_USER,
                          "ingest_ms": int(time.time() * 1000),
                          "samples": [{"session_id": session, "t": t0 + second + 1,
                                       "power_w": 200.0, "heart_rate": 140}]}  # fmt: skip
                batch.append((session, orjson.dumps(record)))
            if batch:
                await _append_many(client, batch)
    load_end_ms = time.time() * 1000
    last_t = t0 + duration_s
    deadline = time.monotonic() + 60
    while not (boards and boards[-1][1]["timestamp"] >= last_t) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # the last delta of the stragglers
    stop.set()
    await tail
    await tail_updates
    await updates_client.aclose()
    stalls = await _loop_stalls(metrics_port) if metrics_port is not None else {}
    stored = json.loads(await client.get(group_board_key(group)) or b"{}")
    await client.aclose()
    await tail_client.aclose()
    load_boards = [(ms, e) for ms, e in boards if e["ingest_ms"] >= t0 * 1000]
    # Boards sent while samples still came; the board after the last sample waited for
    # the group's next second (at most one board a second), up to 1 s: not a load figure.
    during = [
        ms - e["ingest_ms"]
        for sent, (ms, e) in zip(sent_ms, boards, strict=True)
        if e["ingest_ms"] >= t0 * 1000 and sent <= load_end_ms
    ]
    trailing = [
        round(ms - e["ingest_ms"], 1)
        for sent, (ms, e) in zip(sent_ms, boards, strict=True)
        if e["ingest_ms"] >= t0 * 1000 and sent > load_end_ms
    ]
    latencies = [ms - e["ingest_ms"] for ms, e in load_boards]
    # Until the agent sent it (the entry's time): the rest is the read from ``live``.
    until_sent = [
        sent - e["ingest_ms"]
        for sent, (_, e) in zip(sent_ms, boards, strict=True)
        if e["ingest_ms"] >= t0 * 1000
    ]
    arrivals = [ms for ms, _ in load_boards]
    spacing = [b - a for a, b in itertools.pairwise(arrivals)]
    sent_spacing = [b - a for a, b in itertools.pairwise(sent_ms)]  # the agent's clock
    seqs = [e["seq"] for _, e in boards]
    offline = race_standings(
        [
            Track(user, start_s, np.array([t for t, _ in points]), np.array([d for _, d in points]))
            for user, points in tracks.items()
        ]
    )
    # The board as a client builds it: the last full board and the deltas after it.
    board: dict[str, dict[str, Any]] = {}
    for _, event in boards:
        if event["full"]:
            board = {}
        board.update({row["athlete_id"]: row for row in event["rows"]})
    live = sorted(
        board.values(), key=lambda r: (r["rank"] is None, r["rank"] or 0, r["athlete_id"])
    )
    exact = ("athlete_id", "rank", "distance_m", "gap_m")
    wrong = sum(
        1 for a, b in zip(live, offline, strict=False)
        if any(a[k] != b[k] for k in exact) or abs(a["gap_s"] - b["gap_s"]) > GAP_S_TOLERANCE
    )  # fmt: skip
    return {
        "athletes": n,
        "samples_sent": n * duration_s,
        "boards": len(boards),
        "boards_per_s": round(len(load_boards) / duration_s, 2),
        "min_board_spacing_ms_sent": min(sent_spacing) if sent_spacing else None,
        "min_board_spacing_ms_arrived": round(min(spacing), 1) if spacing else None,
        "board_bytes_median": statistics.median(len(orjson.dumps(e)) for _, e in boards),
        "seq_gapless": seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False,
        "sample_to_leaderboard_ms": _percentiles(latencies),
        "sample_to_leaderboard_during_load_ms": _percentiles(during),
        "boards_after_load_ms": trailing,
        "sample_to_board_sent_ms": _percentiles(until_sent),
        # The three slowest boards: (ms to arrival, ms to sent, full, seq, rows).
        "slowest_boards": sorted(
            (
                (
                    round(ms - e["ingest_ms"]),
                    sent - e["ingest_ms"],
                    e["full"],
                    e["seq"],
                    len(e["rows"]),
                )
                for sent, (ms, e) in zip(sent_ms, boards, strict=True)
                if e["ingest_ms"] >= t0 * 1000
            ),
            reverse=True,
        )[:3],
        "background_sessions": len(background),
        "background_update_ms": _percentiles(update_ms),
        "live_loop_stall": stalls,
        "board_rows_full": len(stored.get("rows", [])),
        "standings_checked": len(offline),
        "standings_wrong": wrong + abs(len(live) - len(offline)),
        "gap_s_max_error": round(
            max(
                (abs(a["gap_s"] - b["gap_s"]) for a, b in zip(live, offline, strict=False)),
                default=0.0,
            ),
            3,
        ),
    }


async def _start_all(redis_url: str, group: str, members: list[tuple[str, str]]) -> float:
    """The group's ``created`` and every member's start; the start time (epoch s)."""
    client = redis_client(redis_url)
    payload = {"id": group, "kind": "race", "sport": "ride", "distance_m": None,
               "starts_at_ms": int(time.time() * 1000), "plan": None}  # fmt: skip
    created = {"kind": "control", "group_id": group, "action": "created", "ingest_ms": 0,
               "at_ms": 0, "payload": {"group": payload}}  # fmt: skip
    key = group_key(group)
    partition = streams.partition_for_key(key, PARTITIONS)
    await streams.append(client, GROUPS_TOPIC, partition, [(key, orjson.dumps(created), None, 0)])
    now_ms = int(time.time() * 1000)
    starts = [(session, orjson.dumps({
        "kind": "control", "session_id": session, "user_id": user, "ingest_ms": now_ms,
        "action": "start", "at_ms": now_ms, "payload": {"group": payload}}))
        for user, session in members]  # fmt: skip
    await _append_many(client, starts)
    await client.aclose()
    return now_ms / 1000.0


def _one_run(
    redis_url: str, database_url: str, athletes: int, duration_s: int, background: int
) -> dict[str, Any]:
    group, members, probe = _setup(database_url, athletes)
    others = _sessions(database_url, background) if background else []
    with _Workers(redis_url, database_url) as workers:
        start_s = uvloop.run(_start_all(redis_url, group, members))
        uvloop.run(_until_processing(redis_url, probe))
        with full_collections_deferred():
            result = uvloop.run(
                _race(redis_url, group, members, duration_s, start_s, others, workers.ports["live"])
            )
    return result


def bench_groups(
    settings: Settings, *, athletes: int, duration_s: int, runs: int, background: int = 0
) -> dict[str, Any]:
    """``runs`` runs on fresh servers; medians over them."""
    out: dict[str, Any] = {"athletes": athletes, "duration_s": duration_s, "runs": []}
    for _ in range(runs):
        with private_servers() as (redis_url, database_url):
            run = _one_run(redis_url, database_url, athletes, duration_s, background)
            with full_collections_deferred():
                raw = uvloop.run(raw_roundtrip_ms(redis_url, athletes, min(duration_s, 20)))
            run["raw_xadd_xread_latency_ms"] = _percentiles(raw)
            out["redis_version"] = _redis_version(redis_url)
        out["runs"].append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    runs_ = out["runs"]
    out["median"] = {
        "sample_to_leaderboard_p50_ms": statistics.median(
            r["sample_to_leaderboard_ms"]["p50"] for r in runs_
        ),
        "sample_to_leaderboard_p99_ms": statistics.median(
            r["sample_to_leaderboard_ms"]["p99"] for r in runs_
        ),
        "during_load_p50_ms": statistics.median(
            r["sample_to_leaderboard_during_load_ms"]["p50"] for r in runs_
        ),
        "during_load_p99_ms": statistics.median(
            r["sample_to_leaderboard_during_load_ms"]["p99"] for r in runs_
        ),
        "boards_per_s": statistics.median(r["boards_per_s"] for r in runs_),
        "raw_latency_p99_ms": statistics.median(
            r["raw_xadd_xread_latency_ms"]["p99"] for r in runs_
        ),
        "standings_wrong": max(r["standings_wrong"] for r in runs_),
        "live_loop_stall_max_ms": statistics.median(
            r["live_loop_stall"].get("max_ms", 0.0) for r in runs_
        ),
    }
    if background:
        out["median"]["background_update_p99_ms"] = statistics.median(
            r["background_update_ms"].get("p99", 0.0) for r in runs_
        )
    return out
