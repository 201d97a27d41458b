"""A class on real parts: the coach creates it with a shared plan, six athletes' devices
post samples through the edge (one holds the targets, one rides under, one over, one
starts late, one has no power meter, one is removed by the coach mid-class), the live
and store workers rank them, the coach finishes, the standings are stored and a
``livecoach replay --group`` gives them again. The board is checked against
bench/groups_offline.py's class computation of the same samples. Real edge, real
worker processes, real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
import pytest
import redis.asyncio as aioredis

from bench.groups_offline import Rider, class_standings
from pipeline.constants import LIVE_TOPIC
from pipeline.records import group_key
from pipeline.transport import streams
from tests.ids import uid
from tests.test_agents_e2e import PARTITIONS, Workers, _wait_for
from tests.test_replay_cli import _replay
from tests.web.conftest import (
    ATHLETE,
    COACH,
    OTHER_ATHLETE,
    SAMPLES_T0,
    call,
    coached_group,
    frames_until,
)
from web.groups import read_board

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOLDS, UNDER, OVER, LATE, NO_POWER, REMOVED = ATHLETE, OTHER_ATHLETE, uid(5), uid(6), uid(7), uid(8)
#: The class starts 9.5 s into the samples (the first 10 are a warm-up before it): no
#: sample on an interval's boundary, where a millisecond of rounding would move it.
CLASS_START = SAMPLES_T0 + 9.5
PLAN = {"name": "2 x 20 s", "intervals": [
    {"name": "warm-up", "duration_s": 20, "power_w": {"low": 150, "high": 190}},
    {"name": "rep 1", "duration_s": 20, "power_w": {"low": 250, "high": 270}},
    {"name": "easy", "duration_s": 10},
    {"name": "rep 2", "duration_s": 20, "power_w": {"low": 250, "high": 270},
     "heart_rate_bpm": {"low": 120, "high": 170}},
]}  # fmt: skip
#: Samples are posted 0-85 s (the plan ends at 80 s); the late starter from 40 s; the
#: rider under the targets drops out for 14 s (its next sample counts 10 s at most).
LAST = 86
FIRST = {LATE: 40}
WEIGHT_KG = {HOLDS: 75.0, UNDER: 60.0, OVER: 80.0, LATE: 70.0, NO_POWER: 65.0}
GAPS = {UNDER: range(56, 70)}
REMOVED_AT = 40


def _power(athlete: UUID, i: int) -> float | None:
    """Watts at second ``i`` (the class clock is ``i - 9.5``)."""
    interval = next((k for k, end in enumerate((30, 50, 60, 80)) if i < end), 4) if i >= 10 else -1
    if athlete in (HOLDS, LATE, REMOVED):
        return (120.0, 170.0, 260.0, 200.0, 260.0, 150.0)[interval + 1]
    if athlete == UNDER:
        return 160.0
    if athlete == OVER:
        return (150.0, 200.0, 280.0 if i < 35 else 265.0, 300.0, 300.0, 150.0)[interval + 1]
    return None


def _sample(athlete: UUID, i: int) -> dict[str, Any]:
    sample: dict[str, Any] = {"t": SAMPLES_T0 + i, "heart_rate": 150, "speed_m_s": 8.0,
                              "distance_m": 8.0 * i}  # fmt: skip
    power = _power(athlete, i)
    if power is not None:
        sample["power_w"] = power
    return sample


def _seconds(athlete: UUID, first: int, last: int) -> list[int]:
    gap = GAPS.get(athlete, range(0))
    return [i for i in range(max(first, FIRST.get(athlete, 0)), last) if i not in gap]


async def _post(edge: Any, athlete: UUID, session: str, first: int, last: int) -> None:
    samples = [_sample(athlete, i) for i in _seconds(athlete, first, last)]
    if not samples:
        return
    async with edge.session.post(
        edge.url(f"/api/v1/live/sessions/{session}/update"),
        headers=edge.headers(athlete, "athlete"),
        json={"samples": samples},
    ) as resp:
        assert resp.status == 202, await resp.text()


def _offline(athletes: list[UUID]) -> list[dict[str, Any]]:
    riders = []
    for athlete in athletes:
        seconds = _seconds(athlete, 0, LAST)
        power = [_power(athlete, i) for i in seconds]
        riders.append(Rider(
            str(athlete), np.array([SAMPLES_T0 + i for i in seconds]),
            np.array([math.nan if p is None else p for p in power]),
            np.full(len(seconds), 8.0), np.full(len(seconds), 150.0), WEIGHT_KG.get(athlete),
        ))  # fmt: skip
    return class_standings(riders, PLAN, CLASS_START)


async def _boards(client: aioredis.Redis, group: str) -> list[dict[str, Any]]:
    """The group's leaderboard events on ``live``, as the agents published them."""
    partition = streams.partition_for_key(group_key(group), PARTITIONS)
    out = []
    for _, (_, value, _, _) in await streams.read(client, LIVE_TOPIC, partition, 0, count=10_000):
        event = json.loads(value) if value is not None else {}
        if event.get("type") == "leaderboard" and event.get("group_id") == group:
            out.append(event)
    return out


def _members(database_url: str, group: str) -> dict[str, tuple[Any, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT athlete_id::text, joined_at, left_at FROM live_group_members"
            " WHERE group_id = %s",
            (group,),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_a_class_ranks_by_target_held_as_offline_and_replays_the_same(
    edge: Any, workers: Workers, redis_url: str, database_url: str
) -> None:
    athletes = [HOLDS, UNDER, OVER, LATE, NO_POWER, REMOVED]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n, athlete in enumerate(athletes[2:]):
            conn.execute("INSERT INTO users (id, email, name, role) VALUES (%s, %s, %s,"
                         " 'athlete')", (athlete, f"a{n}@x", f"rider {n}"))  # fmt: skip
        for athlete in athletes[1:]:
            conn.execute("INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
                         (COACH, athlete))  # fmt: skip
    for athlete, weight in WEIGHT_KG.items():  # for W/kg
        status, _ = await call(edge, "PUT", f"/athletes/{athlete}/thresholds", athlete,
                               "athlete", {"weight_kg": weight})  # fmt: skip
        assert status == 200
    gid, coach = await coached_group(
        edge,
        {"name": "spin", "sport": "ride", "kind": "class", "starts_at": CLASS_START, "plan": PLAN},
        athletes,
    )
    client = aioredis.Redis.from_url(redis_url)
    sessions: dict[UUID, str] = {}

    async def start(athlete: UUID) -> None:
        status, row = await call(edge, "POST", "/sessions/start", athlete, "athlete",
                                 {"group_id": gid, "sport": "ride"})  # fmt: skip
        assert status == 201, row
        sessions[athlete] = str(row["id"])

    try:
        for athlete in athletes:
            if athlete not in FIRST:
                await start(athlete)
        for first in range(0, LAST, 10):
            if first == FIRST[LATE]:
                await start(LATE)  # starts late, in the group from its start
            await asyncio.gather(*[_post(edge, a, s, first, min(first + 10, LAST))
                                   for a, s in sessions.items()])  # fmt: skip
            if first + 10 == REMOVED_AT:
                # Removed mid-class while riding, once a board has shown them: off the
                # board for good.
                deadline = time.monotonic() + 30
                while str(REMOVED) not in {
                    r["athlete_id"] for r in (await read_board(client, gid) or {}).get("rows", [])
                    if r["pct_target"] is not None
                }:  # fmt: skip
                    assert time.monotonic() < deadline, "the removed rider never on a board"
                    await asyncio.sleep(0.1)
                status, _ = await call(edge, "DELETE", f"/groups/{gid}/members/{REMOVED}",
                                       COACH, "coach")  # fmt: skip
                assert status == 204
        for athlete, session in sessions.items():
            status, _ = await call(edge, "POST", f"/sessions/{session}/stop", athlete, "athlete")
            assert status == 200

        ranked = [a for a in athletes if a != REMOVED]
        want = _offline(ranked)
        board: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while not (
            board
            and {r["athlete_id"] for r in board["rows"]} == {str(a) for a in ranked}
            and all(r["status"] == "stopped" for r in board["rows"])
        ):
            assert time.monotonic() < deadline, f"the stops did not reach the board: {board}"
            await asyncio.sleep(0.25)
            board = await read_board(client, gid) or {}

        keys = ("athlete_id", "rank", "pct_target", "time_in_zone_s")
        assert [{k: r[k] for k in keys} for r in board["rows"]] == [
            {k: r[k] for k in keys} for r in want
        ]
        for row, expected in zip(board["rows"], want, strict=True):
            assert row["w_per_kg"] == expected["w_per_kg"], (row, expected)
            if expected["np_w"] is None:
                assert row["np_w"] is None, row
            else:
                assert row["np_w"] == pytest.approx(expected["np_w"], abs=1.0), (row, expected)
        shown = (*keys, "np_w", "w_per_kg")
        print("\nclass board:", [{k: r[k] for k in shown} for r in board["rows"]])
        print("offline:", [{k: r[k] for k in shown} for r in want])

        # The removed member: one delta named them in ``removed``; no board after it
        # has them; their membership row is gone.
        events = await _boards(client, gid)
        removals = [i for i, e in enumerate(events) if str(REMOVED) in e["removed"]]
        assert len(removals) == 1 and not events[removals[0]]["full"], removals
        assert any(str(REMOVED) in {r["athlete_id"] for r in e["rows"]}
                   for e in events[: removals[0]])  # fmt: skip
        assert all(str(REMOVED) not in {r["athlete_id"] for r in e["rows"]}
                   for e in events[removals[0]:])  # fmt: skip

        # A stop ends the membership as a leave does: every member has left_at.
        await _wait_for(
            lambda: all(left is not None for _, left in _members(database_url, gid).values()),
            30, "left_at of the stopped members",
        )  # fmt: skip
        assert set(_members(database_url, gid)) == {str(a) for a in ranked}

        status, _ = await call(edge, "POST", f"/groups/{gid}/finish", COACH, "coach")
        assert status == 200
        final = (await frames_until(coach, lambda f: f.get("final") is True, 30))[-1]
        assert final["rows"] == board["rows"]
        stored: list[dict[str, Any]] = []
        for _ in range(60):
            stored = (await call(edge, "GET", f"/groups/{gid}", COACH, "coach"))[1]["standings"]
            if len(stored) == len(ranked):
                break
            await asyncio.sleep(0.5)
        assert [s["standing"] for s in stored] == final["rows"]
        status, _ = await call(edge, "DELETE", f"/groups/{gid}/members/{HOLDS}", COACH, "coach")
        assert status == 409  # the standings are final

        # The class replayed from what the store app wrote: the same final standings.
        def summaries() -> int:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM live_training_sessions"
                    " WHERE training_session_id IS NOT NULL"
                ).fetchone()
            return int(row[0]) if row else 0

        await _wait_for(lambda: summaries() == len(athletes), 30, "summaries")
        result = _replay(redis_url, database_url, "--group", gid, "--json")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert report["differences"] == [] and report["replayed"] == final["rows"]
    finally:
        await client.aclose()
        await coach.close()
