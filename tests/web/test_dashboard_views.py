"""The dashboard's views in Chromium (Playwright) against a real edge, Redis and
PostgreSQL: the athlete's charts, zones, plan targets, laps and Lap button on a phone;
the coach's grid of every linked athlete (names, online state, % of target, a picker,
an error on one card only); accessibility (axe-core, vendored under tests/web/vendor/)
and the main thread's load with 50 athletes at 1 Hz.

``LIVECOACH_SCREENSHOTS=<folder>`` saves screenshots of each view there. The figures
(axe violations, main-thread busy %) are printed (``pytest -s``) and asserted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import psycopg
import pytest

from tests.ids import uid
from tests.web.test_dashboard_api import _controls
from tests.web.test_dashboard_browser import (
    ATHLETE,
    CHROMIUM,
    CHROMIUM_ARGS,
    COACH,
    PAGE_OPTIONS,
    SUBSCRIBED,
    WAIT_MS,
    Edge,
    _record_console,
    _text,
    _until,
    _wait_text,
    _wire_checked,
    live_edge,
    metrics,
    needs_browser,
    publish,
    start_session,
)

pytestmark = pytest.mark.integration

__all__ = ["live_edge"]  # the fixture, shared with test_dashboard_browser

AXE = Path(__file__).with_name("vendor") / "axe.min.js"
SHOTS = os.environ.get("LIVECOACH_SCREENSHOTS")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
#: axe-core impacts that fail the test.
BLOCKING = ("serious", "critical")


async def _shot(page: Any, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        await page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


async def _axe(page: Any, what: str) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations of the page as it is now. The library is
    evaluated through the DevTools protocol (the page's CSP allows no injected script)."""
    await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;true")
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
          const r = await axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "best-practice"] });
          return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length,
            help: v.help, targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
        }"""
    )
    print(
        f"axe-core on {what}: {len(found)} violation kinds", [(v["id"], v["impact"]) for v in found]
    )
    return found


def _serious(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in found if v["impact"] in BLOCKING]


async def _put_thresholds(edge: Edge, athlete: UUID, body: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{edge.base}/api/v1/live/athletes/{athlete}/thresholds",
            headers={"Authorization": f"Bearer {edge.token(athlete, 'athlete')}"},
            json=body,
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


def _history(database_url: str, sid: str, seconds: int) -> None:
    """What the store worker would have written over the last ``seconds``: 1 Hz HR,
    power and speed."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i in range(seconds):
        at = now - dt.timedelta(seconds=seconds - i)
        rows += [
            (sid, at, "heart_rate", 120 + i % 40),
            (sid, at, "power", 180 + (i * 7) % 90),
            (sid, at, "speed", 3.0 + (i % 10) / 10),
        ]
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO live_metrics (live_session_id, timestamp, metric_type, value)"
            " VALUES (%s, %s, %s, %s)",
            rows,
        )


def _ui(path: str) -> str:
    return f"window.livecoach.ui.{path}"


@needs_browser
async def test_athlete_view_charts_zones_targets_laps_on_a_phone(
    live_edge: Edge, redis_url: str, database_url: str
) -> None:
    from playwright.async_api import async_playwright

    edge = live_edge
    await _put_thresholds(edge, ATHLETE, {"hr_max": 190, "ftp_w": 250})
    sid = await start_session(edge)
    _history(database_url, sid, 120)
    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            page = _wire_checked(await context.new_page())
            _record_console(page, "athlete", console)
            token = edge.token(ATHLETE, "athlete")
            await page.goto(f"{edge.base}/dashboard?session={sid}&{PAGE_OPTIONS}#token={token}")
            await _until(page, SUBSCRIBED)

            # History first: two minutes of stored seconds, drawn with the zone bands.
            view = f"window.livecoach.ui.athletes.get('{ATHLETE}')"
            await _until(page, f"() => {view}.series.heart_rate.points >= 100")
            await _until(page, f"() => {view}.series.pace.points >= 100")
            await _until(page, "() => window.livecoach.ui.charts.heart_rate.draws > 0")
            bands = await page.evaluate(
                "Object.fromEntries(Object.entries(window.livecoach.ui.charts)"
                ".map(([k, c]) => [k, c.bands.length]))"
            )
            assert bands == {"heart_rate": 5, "power": 7, "pace": 6, "w_prime": 2}, bands
            for kind in ("heart_rate", "power", "pace", "w_prime"):
                assert await page.locator(f'figure[data-chart="{kind}"] canvas').count() >= 1
            # Time in zone over the history: HR 120-159 bpm of HRmax 190 is Z2 (114-133)
            # and Z3 (133-152) and Z4 (152-171), about two minutes in all.
            tiz = await _text(page, 'figure[data-chart="heart_rate"] .tiz')
            assert tiz.startswith("Time in zone: Z2 "), tiz
            assert "Z3" in tiz and "Z4" in tiz, tiz
            spent = [int(m) * 60 + int(sec) for m, sec in re.findall(r"Z\d (\d+):(\d\d)", tiz)]
            assert 110 <= sum(spent) <= 125, tiz  # 120 s of history, to the last point

            # Live points with the plan's target: a box over the interval.
            base = time.time()
            tempo = {"index": 1, "count": 3, "name": "tempo", "remaining_s": 60,
                     "target": {"power_w": [200, 220]}}  # fmt: skip
            for i in range(3):
                ev = metrics(sid, heart_rate=150 + i, power=230, pace=300, interval=tempo,
                             w_prime_bal_pct=80 - i, hr_zone="Z3", power_zone="Z4")  # fmt: skip
                ev["timestamp"] = base + i
                await publish(redis_url, sid, ev)
            await _wait_text(page, "#m-heart_rate", "152")
            await _until(page, f"() => {view}.series.power.targets.length === 1")
            target = await page.evaluate(f"{view}.series.power.targets[0]")
            assert (target["lo"], target["hi"]) == (200, 220)
            assert target["t1"] - target["t0"] == pytest.approx(2, abs=0.01)
            assert await page.evaluate(f"{view}.series.w_prime.points") == 3
            draws = await page.evaluate("window.livecoach.ui.charts.power.draws")
            assert draws >= 2  # history, then live

            # Big numbers on a phone.
            size = await page.evaluate(
                "parseFloat(getComputedStyle(document.getElementById('m-heart_rate')).fontSize)"
            )
            assert size >= 40, size

            # An alert in plain language, with how long it lasted.
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO live_alerts (id, live_session_id, user_id, rule, metric,"
                    " severity, message, current_value, threshold, triggered_at)"
                    " VALUES (%s, %s, %s, 'heart_rate', 'heart_rate', 'warning',"
                    " 'Heart rate 181 bpm above 175 bpm', 181, 175, NOW())",
                    (str(uid(901)), sid, ATHLETE),
                )
            await publish(redis_url, sid, {
                "type": "alert", "session_id": sid, "user_id": str(ATHLETE),
                "alert": {"id": str(uid(901)), "rule": "heart_rate", "severity": "warning",
                          "message": "Heart rate 181 bpm above 175 bpm", "metric": "heart_rate",
                          "current": 181, "threshold": 175, "direction": "high",
                          "started_at_s": base - 40, "fired_at_s": base},
            })  # fmt: skip
            # The newest open alert also stands above the numbers.
            await _wait_text(page, "#alert-banner", "Heart rate 181 bpm, above your 175 bpm")
            await _wait_text(
                page,
                "li.alert .alert-text",
                "Heart rate 181 bpm, above your 175 bpm ceiling for 40 s",
            )
            # A bound from the plan is the interval's target, not the athlete's ceiling.
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO live_alerts (id, live_session_id, user_id, rule, metric,"
                    " severity, message, current_value, threshold, triggered_at)"
                    " VALUES (%s, %s, %s, 'power', 'power', 'warning',"
                    " 'Power 200 W below 230 W', 200, 230, NOW())",
                    (str(uid(902)), sid, ATHLETE),
                )
            await publish(redis_url, sid, {
                "type": "alert", "session_id": sid, "user_id": str(ATHLETE),
                "alert": {"id": str(uid(902)), "rule": "power", "severity": "warning",
                          "message": "Power 200 W below 230 W", "metric": "power",
                          "current": 200, "threshold": 230, "direction": "low",
                          "bound": "plan", "started_at_s": base - 25, "fired_at_s": base},
            })  # fmt: skip
            await _wait_text(
                page, "#alert-banner", "Power 200 W, below the interval's 230 W target bottom"
            )

            # Laps: the agents' lap events as a table; the Lap button sends one.
            await publish(redis_url, sid, {
                "type": "session_event", "event": "lap", "session_id": sid,
                "user_id": str(ATHLETE),
                "lap": {"index": 1, "trigger": "manual", "moving_s": 305, "distance_m": 2010,
                        "mean_hr": 151.4, "mean_power": 231, "pace_s_per_km": 151.7},
            })  # fmt: skip
            row = page.locator('#laps-body tr[data-lap="1"]')
            await row.wait_for(timeout=WAIT_MS)
            cells = await row.locator("td").all_text_contents()
            assert cells[:5] == ["1", "5:05", "2.01 km", "151 bpm", "231 W"], cells
            assert cells[-1] == "lap button"
            await page.locator("#lap").click()
            await _until(page, "() => document.body.dataset.lapSent === '1'")
            laps = [c for c in await _controls(redis_url, sid) if c.action == "lap"]
            assert len(laps) == 1 and laps[0].payload == {"by": str(ATHLETE)}
            await _shot(page, "athlete-phone")

            serious = _serious(await _axe(page, "the athlete's view (phone)"))
            assert not serious, json.dumps(serious, indent=1)
            # Acknowledged (both): the banner goes.
            for alert_id in (uid(901), uid(902)):
                await page.locator(f'li.alert[data-id="{alert_id}"] button.ack').click()
            await page.locator("#alert-banner").wait_for(state="hidden", timeout=WAIT_MS)
        finally:
            await browser.close()
    problems = [c for c in console if "pageerror" in c or "Refused" in c or ": error:" in c]
    assert not problems, problems


@needs_browser
async def test_coach_grid_of_every_linked_athlete(
    live_edge: Edge, redis_url: str, database_url: str
) -> None:
    """No ?athletes=: every linked athlete, by name, with online state and % of target;
    the picker narrows the grid; a card opens the athlete; an athlete who is not linked
    (or does not exist) is an error on its own card while the others stay live."""
    from playwright.async_api import async_playwright

    edge = live_edge
    second = uid(4)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET name = 'Ada Runner' WHERE id = %s", (ATHLETE,))
        conn.execute("UPDATE users SET name = 'Bo Rider' WHERE id = %s", (second,))
        conn.execute("UPDATE users SET name = 'Cy Trainer' WHERE id = %s", (COACH,))
        conn.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)", (COACH, second)
        )
    sid1 = await start_session(edge)
    sid2 = await start_session(edge, second, sport="ride")
    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=DESKTOP)
            page = _wire_checked(await context.new_page())
            _record_console(page, "coach", console)
            token = edge.token(COACH, "coach")
            await page.goto(f"{edge.base}/dashboard?{PAGE_OPTIONS}#token={token}")
            await _until(page, SUBSCRIBED)
            cards = page.locator(".athlete-card")
            await _until(page, "() => document.querySelectorAll('.athlete-card').length === 2")
            assert await cards.locator(".name").all_text_contents() == ["Ada Runner", "Bo Rider"]
            assert await page.locator("#detail").is_hidden()  # the grid, nothing picked
            assert await _text(page, "#who") == "Cy Trainer (coach)"
            card1 = page.locator(f'.athlete-card[data-athlete="{ATHLETE}"]')
            card2 = page.locator(f'.athlete-card[data-athlete="{second}"]')
            assert await card1.get_attribute("data-online") == "false"
            # Bo opens their own page: online on the coach's card (presence, no data
            # yet), and Bo sees who watches, by name.
            bo = await (await browser.new_context()).new_page()
            _record_console(bo, "athlete-bo", console)
            await bo.goto(
                f"{edge.base}/dashboard?{PAGE_OPTIONS}#token={edge.token(second, 'athlete')}"
            )
            await _until(
                page,
                f"() => document.querySelector('[data-athlete=\"{second}\"]')"
                ".dataset.online === 'true'",
            )
            await _wait_text(bo, "#watching", "Coach Cy Trainer is watching")
            assert await card1.get_attribute("data-online") == "false"

            tempo = {"index": 0, "count": 2, "name": "tempo", "remaining_s": 30,
                     "target": {"power_w": [200, 220]}}  # fmt: skip
            first = metrics(sid1, heart_rate=150, power=231, pace=300, interval=tempo,
                            hr_zone="Z3", power_zone="Z4", w_prime_bal_pct=64)  # fmt: skip
            await publish(redis_url, sid1, first)
            ride = metrics(sid2, second, heart_rate=133, power=170, speed_m_s=10)
            await publish(redis_url, sid2, ride)
            await _wait_text(page, f'[data-athlete="{ATHLETE}"] .target', "power 110 % of target")
            assert await card1.get_attribute("data-online") == "true"
            assert (
                await _text(page, f'[data-athlete="{ATHLETE}"] .zone')
                == "HR Z3 · power Z4 · W\u2032 64 %"
            )
            # A ride in km/h, a run in min/km.
            await _wait_text(
                page, f'[data-athlete="{second}"] .line', "133 bpm · 170 W · 36.0 km/h"
            )
            assert "5:00 /km" in await _text(page, f'[data-athlete="{ATHLETE}"] .line')
            await _shot(page, "coach-grid")
            serious = _serious(await _axe(page, "the coach's grid"))
            assert not serious, json.dumps(serious, indent=1)

            # The picker narrows the grid.
            await page.locator("#picker summary").click()
            await page.locator(f'#picker-list input[data-pick="{second}"]').uncheck()
            assert await card2.is_hidden() and await card1.is_visible()
            assert await _text(page, "#grid-count") == "1 of 2"
            await page.locator("#picker-all").click()
            assert await card2.is_visible()

            # A card opens the athlete's full view, named.
            await card2.click()
            await _wait_text(page, "#detail-title", f"Bo Rider · session {sid2}")
            assert await _text(page, "#m-heart_rate") == "133"
            assert await _text(page, "#m-pace") == "36.0"  # the ride's speed, km/h
            caption = await _text(page, '.chart[data-chart="pace"] figcaption')
            assert caption == "Speed km/h", caption
            assert await _text(page, "#online") == "online"
            await page.locator("#back").click()
            assert await page.locator("#detail").is_hidden()

            # One athlete not linked, one who does not exist: errors on their cards only.
            other = await context.new_page()
            _record_console(other, "coach-2", console)
            await other.goto(
                f"{edge.base}/dashboard?athletes={ATHLETE},{uid(5)},{uid(99)}&{PAGE_OPTIONS}"
                f"#token={token}"
            )
            await _until(other, SUBSCRIBED)
            for missing in (uid(5), uid(99)):
                await _wait_text(
                    other, f'[data-athlete="{missing}"] .card-error', "Not one of your"
                )
            await publish(redis_url, sid1, metrics(sid1, heart_rate=161))
            await _wait_text(other, f'[data-athlete="{ATHLETE}"] .line', "161 bpm")
            assert await other.evaluate("window.livecoach.client.state") == "open"
            channels = await other.evaluate("[...window.livecoach.client.channels.keys()]")
            assert channels == [f"live:user:{ATHLETE}"]
        finally:
            await browser.close()
    problems = [c for c in console if "pageerror" in c or "Refused" in c]
    assert not problems, problems


@needs_browser
async def test_a_grid_of_50_athletes_at_1_hz_keeps_the_main_thread_mostly_idle(
    live_edge: Edge, redis_url: str, database_url: str
) -> None:
    """50 linked athletes, each sending a metrics_update a second for 10 s: the coach's
    page spends under 20 % of the time on its main thread (Chromium's TaskDuration from
    the Performance domain, and long tasks from a PerformanceObserver)."""
    from playwright.async_api import async_playwright

    edge = live_edge
    athletes = [uid(1000 + i) for i in range(50)]
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO users (id, email, name, role) VALUES (%s, %s, %s, 'athlete')",
            [(a, f"a{a.int}@example.com", f"Athlete {i + 1:02d}") for i, a in enumerate(athletes)],
        )
        cur.executemany(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
            [(COACH, a) for a in athletes],
        )
    sids = await asyncio.gather(*(start_session(edge, a) for a in athletes))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport=DESKTOP)
            token = edge.token(COACH, "coach")
            opened = time.monotonic()
            await page.goto(f"{edge.base}/dashboard?{PAGE_OPTIONS}#token={token}")
            await _until(page, SUBSCRIBED)
            await _until(page, "() => document.querySelectorAll('.athlete-card').length === 51")
            # Every card's session, alerts and presence loaded (REST, 4 at a time).
            await _until(
                page,
                "() => { const q = window.livecoach.apiQueue;"
                " return q.active === 0 && q.waiting.length === 0; }",
                timeout_ms=60_000,
            )
            print(f"coach grid of 51: every card loaded in {time.monotonic() - opened:.1f} s")
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            await page.evaluate(
                """() => { window.__long = 0;
                  new PerformanceObserver((l) => {
                    for (const e of l.getEntries()) window.__long += e.duration;
                  }).observe({ type: "longtask" }); }"""
            )

            async def perf() -> dict[str, float]:
                got = await cdp.send("Performance.getMetrics")
                return {m["name"]: float(m["value"]) for m in got["metrics"]}

            async def task_s() -> float:
                return (await perf())["TaskDuration"]

            seconds = 10
            # The baseline: the same page with no events, over 3 s.
            idle0, idle_wall0 = await task_s(), time.monotonic()
            await asyncio.sleep(3)
            idle_pct = 100 * (await task_s() - idle0) / (time.monotonic() - idle_wall0)
            before = await perf()
            busy0, wall0 = before["TaskDuration"], time.monotonic()
            for tick in range(seconds):
                started = time.monotonic()
                await asyncio.gather(*(
                    publish(redis_url, sid, metrics(sid, a, heart_rate=120 + tick, power=200 + tick,
                            pace=300, hr_zone="Z2", power_zone="Z3", w_prime_bal_pct=90 - tick))
                    for sid, a in zip(sids, athletes, strict=True)
                ))  # fmt: skip
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
            last = f"{120 + seconds - 1} bpm"
            await _wait_text(page, f'[data-athlete="{athletes[-1]}"] .line', last)
            busy, wall = await task_s() - busy0, time.monotonic() - wall0
            after = await perf()
            parts = {
                k.removesuffix("Duration"): round(after[k] - before[k], 2)
                for k in ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
            }
            long_ms = await page.evaluate("window.__long")
            pct = 100 * busy / wall
            print(
                f"coach grid, 50 athletes at 1 Hz for {seconds} s: main thread busy "
                f"{pct:.1f} % ({busy:.2f} s of {wall:.1f} s; of which s: {parts}), long tasks "
                f"{long_ms:.0f} ms; idle baseline {idle_pct:.1f} %"
            )
            await _shot(page, "coach-grid-50")
            assert pct < 20, pct
        finally:
            await browser.close()
