"""A race through the real workers: three athletes' samples appended to ``samples`` as
the edge does, their group's boards on ``live``, in Redis and, once finished, in
``live_group_standings``. Real worker processes, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
import redis.asyncio as aioredis

from agents.replay_groups import group_from_database
from bench.groups_offline import Track, race_standings
from pipeline.constants import GROUPS_TOPIC, LIVE_TOPIC, group_board_key
from pipeline.records import (
    ControlRecord,
    GroupControlRecord,
    SampleBatchRecord,
    group_key,
    session_key,
)
from pipeline.transport import streams
from tests.ids import sid
from tests.test_agents_e2e import PARTITIONS, T0, Workers, _wait_for
from tests.test_replay_cli import _replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: m/s of each athlete; the finish line; samples per record (one record a wall second).
SPEEDS = (5.0, 4.5, 4.0)
FINISH_M = 330.0
BATCH = 10
SECONDS = 8


@pytest.fixture
def workers(redis_url: str, database_url: str) -> Iterator[Workers]:
    w = Workers(redis_url, database_url)
    yield w
    w.stop_all()


def _setup(database_url: str) -> tuple[str, list[str], list[str]]:
    """A coach's race group and three athletes' live sessions in it."""
    with psycopg.connect(database_url) as conn:
        coach = sid(800)
        athletes = [sid(200 + n) for n in range(len(SPEEDS))]
        for user in (coach, *athletes):
            conn.execute("INSERT INTO users (id, name) VALUES (%s, 'u')", (user,))
        group = conn.execute(
            "INSERT INTO live_groups (coach_id, name, sport, kind, starts_at, distance_m)"
            " VALUES (%s, 'race', 'run', 'race', now(), %s) RETURNING id",
            (coach, FINISH_M),
        ).fetchone()
        assert group is not None
        sessions = []
        for athlete in athletes:
            row = conn.execute(
                "INSERT INTO live_training_sessions (user_id, started_at, last_update_at)"
                " VALUES (%s, to_timestamp(%s), now()) RETURNING id",
                (athlete, T0),
            ).fetchone()
            assert row is not None
            sessions.append(str(row[0]))
            conn.execute(
                "INSERT INTO live_group_members (group_id, athlete_id, session_id, joined_at)"
                " VALUES (%s, %s, %s, to_timestamp(%s))",
                (group[0], athlete, row[0], T0),
            )
        return str(group[0]), athletes, sessions


async def _append(client: aioredis.Redis, topic: str, key: bytes, record: Any) -> None:
    partition = streams.partition_for_key(key, PARTITIONS)
    entry = (key, record.model_dump_json().encode(), None, int(time.time() * 1000))
    await streams.append(client, topic, partition, [entry])


async def _boards(client: aioredis.Redis, group: str) -> list[tuple[int, dict[str, Any]]]:
    """The group's leaderboard events on ``live`` with their arrival times (ms)."""
    key = group_key(group)
    partition = streams.partition_for_key(key, PARTITIONS)
    out = []
    for _, (_, value, _, ts_ms) in await streams.read(
        client, LIVE_TOPIC, partition, 0, count=10_000
    ):
        event = json.loads(value) if value is not None else {}
        if event.get("type") == "leaderboard" and event.get("group_id") == group:
            out.append((ts_ms, event))
    return out


async def _race_start(
    client: aioredis.Redis, workers: Workers, group: str, athletes: list[str], sessions: list[str]
) -> None:
    """Workers up, the group created, every member started in it, a first board out."""
    payload = {"id": group, "kind": "race", "sport": "run", "distance_m": FINISH_M,
               "starts_at_ms": int(T0 * 1000), "plan": None}  # fmt: skip
    workers.start("live")
    workers.start("store")
    await _append(client, GROUPS_TOPIC, group_key(group), GroupControlRecord(
        group_id=group, action="created", ingest_ms=0, at_ms=int(T0 * 1000),
        payload={"group": payload}))  # fmt: skip
    for athlete, session in zip(athletes, sessions, strict=True):
        await _append(client, "samples", session_key(session), ControlRecord(
            session_id=session, user_id=athlete, ingest_ms=0, action="start",
            at_ms=int(T0 * 1000), payload={"group": payload}))  # fmt: skip
    deadline = time.monotonic() + 60
    while not await _boards(client, group):
        assert time.monotonic() < deadline, "no first board"
        await asyncio.sleep(0.2)


async def _race_seconds(
    client: aioredis.Redis,
    athletes: list[str],
    sessions: list[str],
    seconds: range,
    tracks: dict[str, list[tuple[float, float]]],
) -> None:
    """One record of BATCH samples per athlete a wall second."""
    for second in seconds:
        started = time.monotonic()
        for athlete, session, speed in zip(athletes, sessions, SPEEDS, strict=True):
            times = [T0 + second * BATCH + i + 1 for i in range(BATCH)]
            samples = [{"session_id": session, "t": t, "speed_m_s": speed,
                        "distance_m": round(speed * (t - T0), 1)} for t in times]  # fmt: skip
            tracks.setdefault(athlete, []).extend((s["t"], s["distance_m"]) for s in samples)
            await _append(client, "samples", session_key(session), SampleBatchRecord(
                session_id=session, user_id=athlete, ingest_ms=int(time.time() * 1000),
                samples=samples))  # fmt: skip
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def _changelog(client: aioredis.Redis, table: str) -> dict[bytes, Any]:
    """The newest value of every key of a table's changelog (None: deleted)."""
    values: dict[bytes, Any] = {}
    for partition in range(PARTITIONS):
        topic = f"livecoach-{table}-changelog"
        for _id, fields in await client.xrange(streams.stream_key(topic, partition)):
            key, value, _, _ = streams.decode_entry(fields)
            assert key is not None
            values[key] = json.loads(value) if value is not None else None
    return values


def _offline(athletes: list[str], tracks: dict[str, list[tuple[float, float]]]) -> list[Any]:
    return race_standings(
        [
            Track(a, T0, np.array([t for t, _ in tracks[a]]), np.array([d for _, d in tracks[a]]))
            for a in athletes
        ],
        finish_m=FINISH_M,
    )


async def test_a_live_worker_killed_mid_race_starts_again_with_a_full_board(
    workers: Workers, redis_url: str, database_url: str
) -> None:
    """kill -9 of the live worker mid-race: the boards recover from their table and the
    replayed inputs; the first board after the restart is full, the standings right."""
    group, athletes, sessions = _setup(database_url)
    client = aioredis.Redis.from_url(redis_url)
    tracks: dict[str, list[tuple[float, float]]] = {}
    try:
        await _race_start(client, workers, group, athletes, sessions)
        await _race_seconds(client, athletes, sessions, range(0, 4), tracks)
        killed_ms = int(time.time() * 1000)
        workers.kill("live")
        workers.start("live")
        await _race_seconds(client, athletes, sessions, range(4, SECONDS), tracks)
        last_t = T0 + SECONDS * BATCH
        deadline = time.monotonic() + 60
        while not (boards := await _boards(client, group)) or boards[-1][1]["timestamp"] != last_t:
            assert time.monotonic() < deadline, f"no board up to the last sample: {boards[-1:]}"
            await asyncio.sleep(0.2)
        after = [event for sent_ms, event in boards if sent_ms > killed_ms]
        assert after and after[0]["full"], after[:1]
        # What the restarted worker rebuilt the board from: a small header for the
        # group, one row per member (agents/group_state.py), never the whole board.
        headers = await _changelog(client, "group-boards")
        assert set(headers) == {group_key(group)}
        assert "members" not in headers[group_key(group)]
        rows_stored = await _changelog(client, "group-members")
        assert set(rows_stored) == {group_key(group) + b"/" + a.encode() for a in athletes}
        assert all(row["h"][1] for row in rows_stored.values())  # histories kept
        board: dict[str, dict[str, Any]] = {}
        for _, event in boards:
            if event["full"]:
                board = {}
            board.update({row["athlete_id"]: row for row in event["rows"]})
        rows = sorted(board.values(), key=lambda r: r["rank"])
        want = _offline(athletes, tracks)
        keys = ("athlete_id", "rank", "distance_m", "gap_m", "finish_s")
        assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in want]
    finally:
        await client.aclose()


async def test_a_race_s_boards_are_ordered_at_most_one_a_second_and_right(
    workers: Workers, redis_url: str, database_url: str
) -> None:
    group, athletes, sessions = _setup(database_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        # The members joined: a first (full) board, everyone without data yet.
        await _race_start(client, workers, group, athletes, sessions)
        tracks: dict[str, list[tuple[float, float]]] = {}
        await _race_seconds(client, athletes, sessions, range(SECONDS), tracks)
        # The last records' delta comes from the timer once the members went quiet.
        last_t = T0 + SECONDS * BATCH
        deadline = time.monotonic() + 30
        while True:
            boards = await _boards(client, group)
            if boards and boards[-1][1]["timestamp"] == last_t:
                break
            assert time.monotonic() < deadline, f"no board up to the last sample: {boards[-1:]}"
            await asyncio.sleep(0.2)
        for athlete, session in zip(athletes, sessions, strict=True):
            await _append(client, "samples", session_key(session), ControlRecord(
                session_id=session, user_id=athlete, ingest_ms=0, action="stop",
                at_ms=int((last_t + 1) * 1000)))  # fmt: skip
        deadline = time.monotonic() + 30
        while not all(
            row.get("status") in ("stopped", "finished")
            for row in json.loads(await client.get(group_board_key(group)) or b"{}").get(
                "rows", [{}]
            )
        ):
            assert time.monotonic() < deadline, "the stops did not reach the board"
            await asyncio.sleep(0.2)
        await _append(client, GROUPS_TOPIC, group_key(group), GroupControlRecord(
            group_id=group, action="finished", ingest_ms=0, at_ms=int(last_t * 1000)))  # fmt: skip
        deadline = time.monotonic() + 30
        while not (boards := await _boards(client, group))[-1][1]["final"]:
            assert time.monotonic() < deadline, "no final board"
            await asyncio.sleep(0.2)

        events = [event for _, event in boards]
        seqs = [event["seq"] for event in events]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert events[0]["full"] and len(events) >= SECONDS - 2
        # At most one board a second (the final one is published at once).
        gaps_ms = [b[0] - a[0] for a, b in itertools.pairwise(boards[:-1])]
        assert min(gaps_ms) >= 990, gaps_ms
        # Each delta, applied to the board before it, gives the stored full board.
        board: dict[str, dict[str, Any]] = {}
        for event in events:
            if event["full"]:
                board = {}
            board.update({row["athlete_id"]: row for row in event["rows"]})
        final = events[-1]
        assert final["full"] and final["final"]
        offline = _offline(athletes, tracks)
        got = [{k: row[k] for k in ("athlete_id", "rank", "distance_m", "gap_m", "finish_s")}
               for row in final["rows"]]  # fmt: skip
        want = [{k: row[k] for k in ("athlete_id", "rank", "distance_m", "gap_m", "finish_s")}
                for row in offline]  # fmt: skip
        assert got == want
        for row, expected in zip(final["rows"], offline, strict=True):
            assert row["gap_s"] == pytest.approx(expected["gap_s"], abs=0.15)
            assert row["status"] == ("finished" if expected["finish_s"] is not None else "stopped")
        assert board == {row["athlete_id"]: row for row in final["rows"]}
        stored = json.loads(await client.get(group_board_key(group)))
        assert stored["seq"] == final["seq"] and stored["rows"] == final["rows"]

        def standings() -> list[tuple[str, int | None]]:
            with psycopg.connect(database_url) as conn:
                rows = conn.execute(
                    "SELECT athlete_id::text, rank FROM live_group_standings WHERE group_id = %s"
                    " ORDER BY rank NULLS LAST, athlete_id",
                    (group,),
                ).fetchall()
            return [(r[0], r[1]) for r in rows]

        await _wait_for(lambda: len(standings()) == len(athletes), 30, "stored standings")
        assert standings() == [(row["athlete_id"], row["rank"]) for row in final["rows"]]
        print(f"\n{len(events)} boards in {SECONDS} s of records, gaps {min(gaps_ms)} ms and up")

        # The group replayed from what the store app wrote: the same final standings.
        await _wait_for(lambda: _summaries(database_url) == len(sessions), 30, "summaries")
        recorded = await group_from_database(database_url, group)
        assert len(recorded.sessions) == len(sessions)
        assert recorded.standings == final["rows"]
        result = _replay(redis_url, database_url, "--group", group, "--json")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert report["differences"] == [] and report["replayed"] == final["rows"]
        assert await client.keys("*replay-*") == []
    finally:
        await client.aclose()


def _summaries(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM live_training_sessions WHERE training_session_id IS NOT NULL"
        ).fetchone()
    return int(row[0]) if row else 0
