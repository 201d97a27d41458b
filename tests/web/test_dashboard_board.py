"""The group leaderboard on the dashboard (``/dashboard?group=<id>``) in Chromium against
a real edge, Redis and PostgreSQL: the athlete's view (their row highlighted, the leader
and their neighbours), the coach's (everyone, sortable, alerts flagged), the group's
messages, and axe-core's accessibility check. Leaderboards are appended to ``live``
and stored at ``group_board_key`` as the leaderboard agent does."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from uuid import UUID

import aiohttp
import psycopg
import pytest
import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC, group_board_key, group_channel
from pipeline.records import group_key, session_key
from pipeline.transport.streams import append, partition_for_key
from tests.ids import uid
from tests.web.test_dashboard_browser import (
    ATHLETE,
    CHROMIUM,
    CHROMIUM_ARGS,
    COACH,
    PAGE_OPTIONS,
    Edge,
    _record_console,
    _until,
    _wait_text,
    _wire_checked,
    live_edge,
    needs_browser,
)
from tests.web.test_dashboard_views import DESKTOP, PHONE, _axe, _serious, _shot

pytestmark = pytest.mark.integration

__all__ = ["live_edge"]

#: Seven athletes: ATHLETE and six more, all the coach's.
OTHERS = [uid(40 + i) for i in range(6)]


def _row(athlete: UUID, rank: int, distance_m: float, alerts: int = 0) -> dict[str, Any]:
    return {"athlete_id": str(athlete), "session_id": None, "rank": rank, "status": "active",
            "distance_m": distance_m, "elapsed_s": 600.0, "gap_m": None, "gap_s": None,
            "finish_s": None, "pct_target": None, "time_in_zone_s": None, "w_per_kg": 3.0,
            "np_w": 200.0, "alerts_open": alerts}  # fmt: skip


def _board(gid: str, seq: int, rows: list[dict[str, Any]], full: bool) -> dict[str, Any]:
    return {"type": "leaderboard", "group_id": gid, "kind": "race", "seq": seq,
            "timestamp": time.time(), "full": full, "final": False,
            "ingest_ms": int(time.time() * 1000), "rows": rows, "removed": [],
            "channels": [group_channel(gid)]}  # fmt: skip


async def _api(edge: Edge, method: str, path: str, user: UUID, role: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{edge.base}/api/v1/live{path}",
            json=body,
            headers={"Authorization": f"Bearer {edge.token(user, role)}"},  # type: ignore[arg-type]
        ) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def _live(redis_url: str, key: bytes, event: dict[str, Any]) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        entry = (key, json.dumps(event).encode(), None, int(time.time() * 1000))
        await append(redis, LIVE_TOPIC, partition_for_key(key, 4), [entry])
    finally:
        await redis.aclose()


@needs_browser
async def test_leaderboard_for_the_athlete_and_the_coach(
    live_edge: Edge, redis_url: str, database_url: str
) -> None:
    from playwright.async_api import async_playwright

    edge = live_edge
    everyone = [ATHLETE, *OTHERS]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i, athlete in enumerate(everyone):
            if athlete != ATHLETE:
                conn.execute(
                    "INSERT INTO users (id, email, name, role) VALUES (%s, %s, %s, 'athlete')",
                    (athlete, f"r{i}@example.com", f"Runner {i}"),
                )
                conn.execute("INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
                             (COACH, athlete))  # fmt: skip
        conn.execute("UPDATE users SET name = 'Ada' WHERE id = %s", (ATHLETE,))
    group = await _api(edge, "POST", "/groups", COACH, "coach",
                       {"name": "Club 5k", "sport": "run", "kind": "race",
                        "starts_at": time.time(), "distance_m": 5000})  # fmt: skip
    gid = str(group["id"])
    for athlete in everyone:
        await _api(edge, "POST", f"/groups/{gid}/members", COACH, "coach",
                   {"athlete_id": str(athlete)})  # fmt: skip
    # ATHLETE is 5th of 7; Runner 6 has an alert open.
    order = [OTHERS[0], OTHERS[1], OTHERS[2], OTHERS[3], ATHLETE, OTHERS[4], OTHERS[5]]
    rows = [_row(a, i + 1, 3000.0 - 100 * i, alerts=int(a == OTHERS[5]))
            for i, a in enumerate(order)]  # fmt: skip
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.set(group_board_key(gid), json.dumps(_board(gid, 3, rows, True)))
    finally:
        await redis.aclose()
    await _api(edge, "POST", f"/groups/{gid}/messages", COACH, "coach", {"message": "Go!"})

    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The athlete, on a phone: the leader, two above, themselves, two below.
            phone = _wire_checked(await (await browser.new_context(viewport=PHONE)).new_page())
            _record_console(phone, "athlete", console)
            await phone.goto(f"{edge.base}/dashboard?group={gid}&{PAGE_OPTIONS}"
                             f"#token={edge.token(ATHLETE, 'athlete')}")  # fmt: skip
            await _until(phone, "() => document.querySelectorAll('#board tbody tr').length === 6")
            names = await phone.locator("#board tbody tr td:nth-child(2)").all_text_contents()
            assert names == ["Runner 1", "Runner 3", "Runner 4", "Ada", "Runner 5", "Runner 6"]
            me = phone.locator("#board tbody tr.me")
            assert await me.get_attribute("aria-current") == "true"
            assert (await me.locator("td").first.text_content()) == "5"
            await _wait_text(phone, "#board-messages", "Go!")
            await _shot(phone, "board-athlete")
            assert not _serious(await _axe(phone, "the athlete's leaderboard"))

            # The coach: everyone, alerts flagged, sortable.
            page = _wire_checked(await (await browser.new_context(viewport=DESKTOP)).new_page())
            _record_console(page, "coach", console)
            await page.goto(f"{edge.base}/dashboard?group={gid}&{PAGE_OPTIONS}"
                            f"#token={edge.token(COACH, 'coach')}")  # fmt: skip
            await _until(page, "() => document.querySelectorAll('#board tbody tr').length === 7")
            flagged = page.locator("#board tbody tr.alerted td:nth-child(2)")
            assert await flagged.all_text_contents() == ["Runner 6"]
            # An alert of a member, delivered on the group channel, flags them too.
            sid = str(uuid.uuid4())
            await _live(redis_url, session_key(sid), {
                "type": "alert", "session_id": sid, "user_id": str(OTHERS[0]),
                "group_id": gid, "timestamp": time.time(),
                "alert": {"id": str(uuid.uuid4()), "rule": "hr_zone", "severity": "warning",
                          "message": "HR high", "metric": "heart_rate", "current": 181,
                          "threshold": 175}})  # fmt: skip
            await _until(page, "() => document.querySelectorAll('#board tr.alerted').length === 2")
            # A delta moves ATHLETE to the front; both pages follow.
            await _live(
                redis_url,
                group_key(gid),
                _board(gid, 4, [_row(ATHLETE, 1, 3100.0), _row(OTHERS[0], 2, 3000.0)], False),
            )
            await _wait_text(page, "#board tbody tr:first-child td:nth-child(2)", "Ada")
            await _wait_text(phone, "#board tbody tr.me td:first-child", "1")
            # Sorted by name, then back by rank.
            await page.get_by_role("button", name="Athlete").click()
            first = page.locator("#board tbody tr:first-child td:nth-child(2)")
            assert await first.text_content() == "Ada"
            await page.get_by_role("button", name="Athlete").click()
            assert await first.text_content() == "Runner 6"
            assert await page.locator("th[aria-sort]").get_attribute("aria-sort") == "descending"
            # The coach writes to everyone from the page.
            await page.fill("#board-chat-input", "Last lap")
            await page.click("#board-chat-form button")
            await _wait_text(phone, "#board-messages", "Last lap")
            await _shot(page, "board-coach")
            assert not _serious(await _axe(page, "the coach's leaderboard"))
        finally:
            await browser.close()
    # As the coach's grid (test_dashboard_views): athletes without a session answer 404s.
    errors = [line for line in console if "pageerror" in line or "Refused" in line]
    assert not errors, errors
