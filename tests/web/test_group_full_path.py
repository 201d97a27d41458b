"""A race on real parts: the coach creates it, three athletes join (at their start, and
one late), their devices post samples, the live and store workers compute and store
the standings, a dashboard socket gets the boards, the coach finishes, the standings
are stored. Real edge, real worker processes, real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.ids import uid
from tests.test_agents_e2e import Workers
from tests.web.conftest import (
    ATHLETE,
    COACH,
    OTHER_ATHLETE,
    SAMPLES_T0,
    call,
    coached_group,
    frames_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THIRD = uid(5)
#: Steady speeds (m/s): the ranking by distance is THIRD, OTHER_ATHLETE, ATHLETE.
SPEEDS = {ATHLETE: 3.0, OTHER_ATHLETE: 3.5, THIRD: 4.0}
SECONDS = 40


async def _post(edge: Any, athlete: UUID, sid: str, first: int, last: int) -> None:
    samples = [{"t": SAMPLES_T0 + i, "heart_rate": 150, "power_w": 200.0,
                "speed_m_s": SPEEDS[athlete], "distance_m": SPEEDS[athlete] * i}
               for i in range(first, last)]  # fmt: skip
    async with edge.session.post(
        edge.url(f"/api/v1/live/sessions/{sid}/update"),
        headers=edge.headers(athlete, "athlete"),
        json={"samples": samples},
    ) as resp:
        assert resp.status == 202, await resp.text()


async def test_a_race_from_devices_to_stored_standings(
    edge: Any, workers: Workers, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email, name, role) VALUES (%s, 'c@x', 'Cy', 'athlete')",
            (THIRD,),
        )
        for athlete in (OTHER_ATHLETE, THIRD):
            conn.execute("INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
                         (COACH, athlete))  # fmt: skip
    gid, coach = await coached_group(
        edge,
        {"name": "3 up", "sport": "run", "kind": "race", "starts_at": time.time()},
        SPEEDS,
    )
    sessions: dict[UUID, str] = {}
    for athlete in (ATHLETE, OTHER_ATHLETE):  # joining at the start
        status, row = await call(edge, "POST", "/sessions/start", athlete, "athlete",
                                 {"group_id": gid})  # fmt: skip
        assert status == 201, row
        sessions[athlete] = str(row["id"])
    sessions[THIRD] = await edge.start_session(THIRD)  # joining late
    status, _ = await call(edge, "POST", f"/groups/{gid}/join", THIRD, "athlete",
                           {"session_id": sessions[THIRD]})  # fmt: skip
    assert status == 200
    for first in range(0, SECONDS, 10):
        await asyncio.gather(
            *[_post(edge, a, sid, first, first + 10) for a, sid in sessions.items()]
        )

    def is_board(frame: dict[str, Any]) -> bool:
        return frame.get("type") == "leaderboard"

    # Boards arrive, at most one a second, until the ranking is the one expected.
    boards: list[tuple[float, dict[str, Any]]] = []
    order = [str(THIRD), str(OTHER_ATHLETE), str(ATHLETE)]
    standing: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = (await frames_until(coach, is_board, deadline - time.monotonic()))[-1]
        boards.append((time.monotonic(), frame))
        if frame["full"]:
            standing = {r["athlete_id"]: r for r in frame["rows"]}
        else:
            standing.update({r["athlete_id"]: r for r in frame["rows"]})
        last = max((r.get("distance_m") or 0) for r in standing.values()) if standing else 0
        ranked = sorted(standing, key=lambda a: standing[a]["rank"] or 99)
        if ranked == order and last >= SPEEDS[THIRD] * (SECONDS - 1) - 0.01:
            break
    assert ranked == order, standing
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(boards)]
    assert all(g >= 0.9 for g in gaps), gaps

    status, _ = await call(edge, "POST", f"/groups/{gid}/finish", COACH, "coach")
    assert status == 200
    final = (await frames_until(coach, lambda f: f.get("final") is True, 30))[-1]
    assert [r["athlete_id"] for r in sorted(final["rows"], key=lambda r: r["rank"])] == order
    stored: list[dict[str, Any]] = []
    for _ in range(60):
        stored = (await call(edge, "GET", f"/groups/{gid}", COACH, "coach"))[1]["standings"]
        if len(stored) == 3:
            break
        await asyncio.sleep(0.5)
    assert [s["athlete_id"] for s in stored] == order
    assert [s["rank"] for s in stored] == [1, 2, 3]
    await coach.close()
