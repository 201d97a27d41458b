"""The dashboard and livecoach.js in a real browser (Debian's Chromium driven by
Playwright) against a real edge on a loopback port, over real Redis and PostgreSQL.

One athlete page and one coach page: live tiles from ``live`` events, an alert with
sound and an acknowledgement, chat with typing, read receipts and "coach is watching";
then the edge is stopped and started again on the same port while the athlete writes
and events keep coming: both pages reconnect, resume and miss nothing.

Live events are appended to ``live`` directly with pipeline.streams (as the agents
would). The browser tests skip, with the reason, when Chromium (/usr/bin/chromium) or
the playwright package is missing; the test of the served files runs everywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import aiohttp
import psycopg
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from pipeline.constants import LIVE_TOPIC
from pipeline.embedded import free_port
from pipeline.records import session_key
from pipeline.settings import Settings
from pipeline.transport.streams import append, partition_for_key, stream_id, stream_key
from tests import wire_check
from tests.ids import uid
from web.app import create_app
from web.auth import Role, mint_token
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

ATHLETE, COACH = uid(1), uid(2)
CHROMIUM = os.environ.get("LIVECOACH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
#: Short timings so a reconnect takes about a second (the defaults are 0.5 s to 30 s).
PAGE_OPTIONS = "backoff_base_ms=200&backoff_max_ms=1000&heartbeat_ms=2000"
WAIT_MS = 10_000
EN = "\u2013"  # the page's dash: ranges, and a value not known


def _browser_missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


class Edge:
    """One edge process-alike on a fixed loopback port that can be stopped and started."""

    def __init__(self, settings: Settings, redis_url: str, database_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.database_url = database_url
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = create_app(
            self.settings,
            redis_url=self.redis_url,
            database_url=self.database_url,
            config=EdgeConfig(heartbeat_s=2.0, idle_timeout_s=10.0),
        )
        self.runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await asyncio.wait_for(self.runner.cleanup(), 15)
            self.runner = None

    def token(self, user_id: UUID, role: Role) -> str:
        return mint_token(self.settings, user_id=user_id, role=role, ttl_s=3600)


@pytest.fixture
async def live_edge(
    settings: Settings, redis_url: str, database_url: str, users: None
) -> AsyncIterator[Edge]:
    edge = Edge(settings, redis_url, database_url)
    await edge.start()
    try:
        yield edge
    finally:
        await edge.stop()


def _wire_checked(page: Any) -> Any:
    """Check every frame the page receives from livecoach against the protocol's schema
    (tests/wire_check.py; a violation fails the test at teardown)."""

    def on_socket(ws: Any) -> None:
        if ws.url.split("?")[0].endswith(wire_check.WS_PATH):
            ws.on(
                "framereceived",
                lambda payload: (
                    wire_check.check(json.loads(payload), "in the browser: ")
                    if isinstance(payload, str)
                    else None
                ),
            )

    page.on("websocket", on_socket)
    return page


async def publish(redis_url: str, session_id: str, *events: dict[str, Any]) -> list[int]:
    """Append events to ``live`` as the agents do (the session's partition); offsets."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        p = partition_for_key(session_key(session_id), 4)
        now = int(time.time() * 1000)
        entries = [
            (
                session_key(session_id),
                json.dumps({"timestamp": now / 1000, **e}).encode(),
                None,
                now,
            )
            for e in events
        ]
        return await append(redis, LIVE_TOPIC, p, entries)
    finally:
        await redis.aclose()


def metrics(session_id: str, user_id: UUID = ATHLETE, **values: Any) -> dict[str, Any]:
    """A metrics_update as the agents publish it (their units: pace s/km, distance m)."""
    return {
        "type": "metrics_update",
        "session_id": session_id,
        "user_id": str(user_id),
        "ingest_ms": int(time.time() * 1000),
        "metrics": {"pace": None, "distance": None, "cadence": None, **values},
    }


def aid(name: str) -> str:
    """The alert id (a UUID) of the test's alert ``name``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"livecoach-test-alert:{name}"))


def alert(database_url: str, session_id: str, name: str, current: float) -> dict[str, Any]:
    """An alert as the alerts agent makes it: its row first, then the live event."""
    alert_id = aid(name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO live_alerts (id, live_session_id, user_id, rule, metric, severity,"
            " message, current_value, threshold, triggered_at)"
            " VALUES (%s, %s, %s, 'heart_rate', 'heart_rate', 'warning', %s, %s, 175, NOW())",
            (alert_id, session_id, ATHLETE, f"Heart rate {current:.0f} above 175", current),
        )
    return {
        "type": "alert",
        "session_id": session_id,
        "user_id": str(ATHLETE),
        "alert": {
            "id": alert_id,
            "rule": "heart_rate",
            "severity": "warning",
            "message": f"Heart rate {current:.0f} above 175",
            "metric": "heart_rate",
            "current": current,
            "threshold": 175,
            "sound": True,
            "vibration": True,
        },
    }


async def start_session(edge: Edge, athlete: UUID = ATHLETE, sport: str = "run") -> str:
    """A session of ``athlete``: a run shows pace, a ride speed (and power)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{edge.base}/api/v1/live/sessions/start",
            headers={"Authorization": f"Bearer {edge.token(athlete, 'athlete')}"},
            json={"sport": sport},
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


# --- the served files (no browser needed) --------------------------------------------------


async def test_dashboard_files_are_served_with_safe_headers(live_edge: Edge) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live_edge.base}/dashboard") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            body = await resp.text()
            assert '<script type="module" src="/static/dashboard.js">' in body
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "http" not in csp  # no CDN, no other origin
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["Cache-Control"] == "no-cache"
        async with http.get(f"{live_edge.base}/static/livecoach.js") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/javascript"
            etag = resp.headers["ETag"]
            assert "export class LiveCoachClient" in await resp.text()
        async with http.get(
            f"{live_edge.base}/static/livecoach.js", headers={"If-None-Match": etag}
        ) as resp:
            assert resp.status == 304
        # The vendored chart library, from the one sub-folder served.
        async with http.get(f"{live_edge.base}/static/vendor/uPlot.iife.min.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
            assert "uPlot" in (await resp.text())[:200]
        for path in (
            "/static/vendor/README.md",
            "/static/vendor/.hidden.js",
            "/static/vendor/x/uPlot.iife.min.js",
            "/static/other/dashboard.js",
            "/static/vendor/../__init__.py",
            "/static/__init__.py",
            "/static/../app.py",
            "/static/%2e%2e/app.py",
            "/static/.hidden.js",
            "/static/nope.js",
        ):
            async with http.get(live_edge.base + path) as resp:
                assert resp.status == 404, path
        # The API is untouched by the middleware that serves the files.
        async with http.get(f"{live_edge.base}/healthz") as resp:
            assert resp.status == 200


# --- in the browser -------------------------------------------------------------------------


Page = Any


async def _until(page: Page, script: str, arg: Any = None, timeout_ms: int = WAIT_MS) -> None:
    await page.wait_for_function(script, arg=arg, timeout=timeout_ms)


async def _text(page: Page, selector: str) -> str:
    return str(await page.locator(selector).first.text_content(timeout=WAIT_MS) or "")


async def _wait_text(page: Page, selector: str, expected: str) -> None:
    await _until(
        page,
        "([sel, want]) => { const el = document.querySelector(sel);"
        " return !!el && el.textContent.includes(want); }",
        [selector, expected],
    )


def _record_console(page: Page, who: str, lines: list[str]) -> None:
    def on_console(message: Any) -> None:
        lines.append(f"{who}: {message.type}: {message.text}")

    def on_error(error: Any) -> None:
        lines.append(f"{who}: pageerror: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_error)


SUBSCRIBED = (
    "() => { const c = window.livecoach && window.livecoach.client;"
    " return !!c && c.state === 'open' && c.channels.size > 0 &&"
    " [...c.channels.values()].every(v => v && v.size > 0); }"
)


@needs_browser
async def test_dashboards_live_alerts_chat_and_resume_after_edge_restart(
    live_edge: Edge, redis_url: str, database_url: str
) -> None:
    from playwright.async_api import async_playwright

    started = time.monotonic()
    edge = live_edge
    sid = await start_session(edge)
    console: list[str] = []

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages: dict[str, Page] = {}
            # The athlete's token in the fragment (never sent to a server), the coach's in
            # the query string: both work, and both leave the address bar.
            roles: tuple[tuple[str, int, Role, str], ...] = (
                ("athlete", ATHLETE, "athlete", "#token={token}"),
                ("coach", COACH, "coach", f"&athletes={ATHLETE}&token={{token}}"),
            )
            for who, user, role, extra in roles:
                context = await browser.new_context()
                page = _wire_checked(await context.new_page())
                _record_console(page, who, console)
                token = edge.token(user, role)
                await page.goto(f"{edge.base}/dashboard?{PAGE_OPTIONS}{extra.format(token=token)}")
                pages[who] = page
            athlete, coach = pages["athlete"], pages["coach"]
            for page in (athlete, coach):
                await _until(page, SUBSCRIBED)
                # The token left the address bar.
                assert "token=" not in page.url

            # --- live tiles ---------------------------------------------------------------
            await publish(
                redis_url,
                sid,
                metrics(
                    sid,
                    heart_rate=151,
                    power=240,
                    pace=300,
                    distance=5230,
                    cadence=88,
                    hr_zone="Z3",
                    power_zone="Z4",
                    np=251,
                    w_prime_bal_pct=72.4,
                    w_prime_bal_j=14500,
                ),
            )
            for page in (athlete, coach):
                await _wait_text(page, "#m-heart_rate", "151")
                assert await _text(page, "#m-power") == "240"
                assert await _text(page, "#m-pace") == "5:00"
                assert await _text(page, "#m-distance") == "5.23"
                assert await _text(page, "#m-cadence") == "88"
                assert await _text(page, "#m-np") == "251"
                assert await _text(page, "#m-w_prime") == "72"
                assert "P Z4" in await _text(page, "#s-zones")
            await _wait_text(coach, f'[data-athlete="{ATHLETE}"] .line', "151 bpm")

            # --- presence: the coach follows the athlete ------------------------------------
            await athlete.locator("#watching").wait_for(state="visible", timeout=WAIT_MS)
            # By name (users.name, from GET /roster).
            assert await _text(athlete, "#watching") == f"Coach user {COACH.int} is watching"
            assert await coach.locator("#watching").is_hidden()

            # --- an alert: shown on both, announced with sound, acknowledged by the coach --
            await publish(redis_url, sid, alert(database_url, sid, "hr-1", 181))
            for page in (athlete, coach):
                item = page.locator(f'li.alert[data-id="{aid("hr-1")}"]')
                await item.wait_for(timeout=WAIT_MS)
                # In plain language: the value with its unit, and what it crossed.
                assert "Heart rate 181 bpm, above" in (await item.text_content() or "")
                assert "175 bpm ceiling" in (await item.text_content() or "")
                notified = await item.get_attribute("data-notified") or ""
                assert "sound" in notified.split(), notified
                assert any(n.startswith("vibration") for n in notified.split()), notified
            await coach.locator(f'li.alert[data-id="{aid("hr-1")}"] button.ack').click()
            for page in (coach, athlete):
                await page.locator(
                    f'li.alert[data-id="{aid("hr-1")}"][data-acked="true"]'
                ).wait_for(timeout=WAIT_MS)
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT acknowledged_by FROM live_alerts WHERE id = %s", (aid("hr-1"),)
                ).fetchone()
            assert row == (COACH,)

            # --- the athlete turns alert sound off: saved to the profile, and obeyed -------
            await athlete.locator("#pref-sound").uncheck()
            await _until(athlete, "() => document.body.dataset.prefsSaved === 'sound=false'")
            with psycopg.connect(database_url) as conn:
                prefs = conn.execute(
                    "SELECT sound, vibration FROM athlete_profiles WHERE user_id = %s", (ATHLETE,)
                ).fetchone()
            assert prefs == (False, True)
            await publish(redis_url, sid, alert(database_url, sid, "hr-quiet", 179))
            quiet = athlete.locator(f'li.alert[data-id="{aid("hr-quiet")}"]')
            await quiet.wait_for(timeout=WAIT_MS)
            assert "sound" not in (await quiet.get_attribute("data-notified") or "").split()
            await coach.locator(f'li.alert[data-id="{aid("hr-quiet")}"] button.ack').click()
            await athlete.locator(
                f'li.alert[data-id="{aid("hr-quiet")}"][data-acked="true"]'
            ).wait_for(timeout=WAIT_MS)
            await athlete.locator("#pref-sound").check()
            await _until(athlete, "() => document.body.dataset.prefsSaved === 'sound=true'")

            # --- chat: typing, message, read receipt, reply ----------------------------------
            await athlete.locator("#chat-input").press_sequentially("hello coach", delay=10)
            await _wait_text(coach, "#typing", f"user {ATHLETE.int} is typing")
            await athlete.locator("#chat-input").press("Enter")
            await _wait_text(coach, "#messages", "hello coach")
            # The coach's page is open on this athlete: it marks the message read.
            await athlete.locator('#messages li.mine .status[data-status="read"]').wait_for(
                timeout=WAIT_MS
            )
            # Who read it, by name (read receipts are per reader).
            assert await _text(athlete, "#messages li.mine .status") == (
                f"\u2713\u2713 read by user {COACH.int}"
            )
            await coach.locator("#chat-input").fill("keep it steady")
            await coach.locator("#chat-send").click()
            await _wait_text(athlete, "#messages", "keep it steady")
            assert await coach.locator("#typing").is_hidden()

            # --- the edge goes away and comes back ---------------------------------------------
            await edge.stop()
            for page in (athlete, coach):
                await _until(page, "() => document.body.dataset.state !== 'open'")
            # Offline: the athlete writes (queued); the pipeline keeps producing.
            await athlete.locator("#chat-input").fill("sent while offline")
            await athlete.locator("#chat-input").press("Enter")
            await athlete.locator('#messages .status[data-status="queued"]').wait_for(
                timeout=WAIT_MS
            )
            assert "queued" in await _text(athlete, "#queued")
            queued = await athlete.evaluate(
                "window.livecoach.client.queue.map(e => [e.frame.type, e.frame.message || null])"
            )
            # the message, the latest typing state only (typing true was superseded), and
            # maybe the read receipt of "keep it steady" if its ack was lost with the edge
            assert [q for q in queued if q[0] != "read"] == [
                ["message", "sent while offline"],
                ["typing", None],
            ], queued
            await publish(
                redis_url,
                sid,
                metrics(sid, heart_rate=163, power=300),
                alert(database_url, sid, "hr-2", 186),
                metrics(sid, heart_rate=164, power=310),
            )
            await asyncio.sleep(0.5)
            await edge.start()

            for page in (athlete, coach):
                await _until(page, "() => document.body.dataset.connects === '2'")
                await _until(page, SUBSCRIBED)
                await _wait_text(page, "#m-heart_rate", "164")
                await page.locator(f'li.alert[data-id="{aid("hr-2")}"]').wait_for(timeout=WAIT_MS)
            # the queued message reached the coach, once, after the earlier ones
            await _wait_text(coach, "#messages", "sent while offline")
            texts = [
                t.strip() for t in await coach.locator("#messages li .text").all_text_contents()
            ]
            assert texts == ["hello coach", "keep it steady", "sent while offline"], texts
            await athlete.locator(
                '#messages li.mine:last-child .status[data-status="read"]'
            ).wait_for(timeout=WAIT_MS)
            assert await athlete.locator("#queued").is_hidden()
            # the replayed alert is announced once, nothing came twice
            for page in (athlete, coach):
                assert await page.locator("li.alert").count() == 3
                assert await page.locator(f'li.alert[data-id="{aid("hr-2")}"]').get_attribute(
                    "data-notified"
                )
                assert await page.locator("#messages li").count() == 3
            # presence came back with the coach's new socket
            await athlete.locator("#watching").wait_for(state="visible", timeout=WAIT_MS)
            with psycopg.connect(database_url) as conn:
                stored = conn.execute(
                    "SELECT message FROM live_messages WHERE live_session_id = %s ORDER BY seq",
                    (sid,),
                ).fetchall()
            assert [r[0] for r in stored] == texts
            shots = os.environ.get("LIVECOACH_SCREENSHOTS")  # a folder: look at the pages
            if shots:
                for who, page in pages.items():
                    await page.set_viewport_size({"width": 1200, "height": 820})
                    await page.screenshot(
                        path=os.path.join(shots, f"dashboard-{who}.png"), full_page=True
                    )
        finally:
            await browser.close()

    errors = [line for line in console if "pageerror" in line]
    assert not errors, errors
    assert time.monotonic() - started < 60


@needs_browser
async def test_coach_watches_two_athletes(
    live_edge: Edge, redis_url: str, database_url: str
) -> None:
    """A coach linked to two athletes: a card each, events routed to the right one,
    the detail panel (tiles, alerts, chat) follows the card picked."""
    from playwright.async_api import async_playwright

    second = uid(4)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)", (COACH, second)
        )
    sid1 = await start_session(live_edge)
    sid2 = await start_session(live_edge, second)
    checked_before = wire_check.checked[0]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _wire_checked(await browser.new_page())
            token = live_edge.token(COACH, "coach")
            await page.goto(
                f"{live_edge.base}/dashboard?athletes={ATHLETE},{second}&{PAGE_OPTIONS}"
                f"#token={token}"
            )
            await _until(page, SUBSCRIBED)
            assert await page.locator(".athlete-card").count() == 2
            await publish(redis_url, sid1, metrics(sid1, heart_rate=121, power=180))
            await publish(redis_url, sid2, metrics(sid2, second, heart_rate=162, power=305))
            await _wait_text(page, f'[data-athlete="{ATHLETE}"] .line', "121 bpm")
            await _wait_text(page, f'[data-athlete="{second}"] .line', "162 bpm")
            # the first athlete is shown; an alert of the second only marks its card
            assert await _text(page, "#m-heart_rate") == "121"
            second_alert = alert(database_url, sid2, "a4-1", 190)
            second_alert["user_id"] = str(second)
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE live_alerts SET user_id = %s WHERE id = %s", (second, aid("a4-1"))
                )
            await publish(redis_url, sid2, second_alert)
            await _wait_text(page, f'[data-athlete="{second}"] .alerts-count', "1 open alert")
            assert await page.locator("li.alert").count() == 0
            # pick the second athlete
            await page.locator(f'[data-athlete="{second}"]').click()
            await _wait_text(page, "#detail-title", f"user {second.int} · session {sid2}")
            assert await _text(page, "#m-heart_rate") == "162"
            assert await _text(page, "#m-power") == "305"
            await page.locator(f'li.alert[data-id="{aid("a4-1")}"] button.ack').click()
            await page.locator(f'li.alert[data-id="{aid("a4-1")}"][data-acked="true"]').wait_for(
                timeout=WAIT_MS
            )
            await page.locator("#chat-input").fill("only for athlete four")
            await page.locator("#chat-send").click()
            await _wait_text(page, "#messages", "only for athlete four")
            # back to the first: its own (empty) chat, its own tiles
            await page.locator(f'[data-athlete="{ATHLETE}"]').click()
            await _wait_text(page, "#detail-title", f"user {ATHLETE.int} · session {sid1}")
            assert await _text(page, "#m-heart_rate") == "121"
            assert await page.locator("#messages li").count() == 0
        finally:
            await browser.close()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT live_session_id::text, message FROM live_messages ORDER BY seq"
        ).fetchall()
    assert rows == [(sid2, "only for athlete four")]
    # What the page received was checked against the protocol's schema.
    assert wire_check.checked[0] > checked_before


@needs_browser
async def test_resume_past_retention_shows_the_snapshot(
    live_edge: Edge, redis_url: str, database_url: str
) -> None:
    """Events missed while away were trimmed from ``live`` before the page came back: the
    edge answers ``recovered: false`` with a snapshot from PostgreSQL, which the page
    shows (latest metrics, recent messages), then it follows live again."""
    from playwright.async_api import async_playwright

    edge = live_edge
    sid = await start_session(edge)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _wire_checked(await browser.new_page())
            token = edge.token(ATHLETE, "athlete")
            await page.goto(f"{edge.base}/dashboard?{PAGE_OPTIONS}#token={token}")
            await _until(page, SUBSCRIBED)
            await publish(redis_url, sid, metrics(sid, heart_rate=120))
            await _wait_text(page, "#m-heart_rate", "120")

            await edge.stop()
            await _until(page, "() => document.body.dataset.state !== 'open'")
            # What the agents stored meanwhile, and the live events, all but the last
            # of which retention trims before the page is back.
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO live_metrics (live_session_id, timestamp, metric_type, value)"
                    " VALUES (%s, NOW(), 'heart_rate', 142), (%s, NOW(), 'speed', 4)",
                    (sid, sid),
                )
                conn.execute(
                    "INSERT INTO live_messages (live_session_id, sender_id, message_type,"
                    " message) VALUES (%s, %s, 'text', 'written while you were away')",
                    (sid, COACH),
                )
            offsets = await publish(
                redis_url,
                sid,
                metrics(sid, heart_rate=130),
                metrics(sid, heart_rate=141),
                {
                    "type": "session_event",
                    "event": "lap",
                    "session_id": sid,
                    "user_id": str(ATHLETE),
                },
            )
            redis = aioredis.Redis.from_url(redis_url)
            try:
                key = stream_key(LIVE_TOPIC, partition_for_key(session_key(sid), 4))
                await redis.xtrim(key, minid=stream_id(offsets[-1]), approximate=False)
            finally:
                await redis.aclose()
            await edge.start()

            await _until(page, "() => document.body.dataset.connects === '2'")
            await _wait_text(page, "#m-heart_rate", "142")  # from the snapshot
            assert await _text(page, "#m-pace") == "4:10"  # 4 m/s
            await _wait_text(page, "#messages", "written while you were away")
            resumed = await page.evaluate(
                f"window.livecoach.client.cursors()['live:user:{ATHLETE}'].length"
            )
            assert resumed == 4
            # and live again after the snapshot
            await publish(redis_url, sid, metrics(sid, heart_rate=150))
            await _wait_text(page, "#m-heart_rate", "150")
        finally:
            await browser.close()


@needs_browser
async def test_the_plans_interval_its_target_and_time_left(live_edge: Edge, redis_url: str) -> None:
    """A session with a plan: the page shows the current interval, its targets and the
    time (or distance) left, and "no plan" again once the plan is over."""
    from playwright.async_api import async_playwright

    edge = live_edge
    sid = await start_session(edge)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _wire_checked(await browser.new_page())
            token = edge.token(ATHLETE, "athlete")
            await page.goto(f"{edge.base}/dashboard?{PAGE_OPTIONS}#token={token}")
            await _until(page, SUBSCRIBED)
            tempo = {"index": 1, "count": 5, "name": "tempo", "remaining_s": 83.4,
                     "target": {"power_w": [200, 220], "heart_rate_bpm": [140, 155]}}  # fmt: skip
            await publish(redis_url, sid, metrics(sid, heart_rate=141, interval=tempo))
            await _wait_text(page, "#m-interval", "1:23")
            assert await _text(page, "#s-interval") == f"2/5 tempo · 200{EN}220 W · 140{EN}155 bpm"
            reps = {"index": 2, "count": 5, "name": "400 m", "remaining_m": 250.0,
                    "target": {"pace_s_per_km": [230, 245]}}  # fmt: skip
            await publish(redis_url, sid, metrics(sid, heart_rate=150, interval=reps))
            await _wait_text(page, "#m-interval", "250 m")
            assert await _text(page, "#s-interval") == f"3/5 400 m · 3:50{EN}4:05 /km"
            await publish(redis_url, sid, metrics(sid, heart_rate=120))  # the plan is over
            await _wait_text(page, "#s-interval", "no plan")
            assert await _text(page, "#m-interval") == EN
        finally:
            await browser.close()


@needs_browser
async def test_client_asks_for_a_token_on_4401_and_stops_on_4403(live_edge: Edge) -> None:
    """The close codes: a refused token shows the sign-in form again; a channel the user
    may not see (another athlete's) stops the client instead of reconnecting."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _wire_checked(await browser.new_page())
            await page.goto(f"{live_edge.base}/dashboard?token=not-a-jwt&{PAGE_OPTIONS}")
            await page.locator("#login").wait_for(state="visible", timeout=WAIT_MS)
            await _wait_text(page, "#login-note", "paste a new one")
            assert await page.evaluate("window.livecoach.client.lastClose.code") == 4401
            # A good token through the form: the same client reconnects.
            await page.locator("#token").fill(live_edge.token(ATHLETE, "athlete"))
            await page.locator("#login-form button").click()
            await _until(page, SUBSCRIBED)

            coach = _wire_checked(await browser.new_page())
            token = live_edge.token(COACH, "coach")
            await coach.goto(f"{live_edge.base}/dashboard?token={token}&{PAGE_OPTIONS}")
            await _until(coach, SUBSCRIBED)
            # Athlete 4 is not linked to coach 2: the client asking for the channel
            # anyway (the page itself only follows linked athletes) is stopped.
            await coach.evaluate(f"window.livecoach.client.subscribe('live:user:{uid(4)}')")
            await _until(coach, "() => document.body.dataset.state === 'stopped'")
            assert await coach.evaluate("window.livecoach.client.lastClose.code") == 4403
            await _wait_text(coach, "#login-note", "Not allowed")
            await asyncio.sleep(1.5)  # no reconnect after a 4403
            assert await coach.evaluate("window.livecoach.client.state") == "stopped"
        finally:
            await browser.close()


# JavaScript run in the page: livecoach.js against a scripted fake WebSocket, so every
# close code and ordering rule is checked without timing luck. Returns the failures.
_CLIENT_LOGIC = r"""
async () => {
  const { LiveCoachClient, backoffDelay, parseCursor } = await import("/static/livecoach.js");
  const failures = [];
  const check = (ok, what) => { if (!ok) failures.push(what); };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (fn, what, ms = 2000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) { if (fn()) return true; await sleep(5); }
    failures.push(`timeout: ${what}`);
    return false;
  };

  // --- pure functions
  const delays = [0, 1, 2, 3, 4, 5, 6, 7].map(
    (n) => backoffDelay(n, { baseMs: 500, maxMs: 30000, random: () => 1 }));
  check(JSON.stringify(delays) === JSON.stringify(
    [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]), `ceilings ${delays}`);
  check(backoffDelay(9, { baseMs: 500, maxMs: 30000, random: () => 0 }) === 0, "full jitter");
  const limited = [0, 1].map((r) =>
    backoffDelay(0, { baseMs: 500, maxMs: 30000, floorMs: 15000, random: () => r }));
  check(limited[0] === 15000 && limited[1] === 30000, `4429 floor ${limited}`);
  check(parseCursor("3:120")[1] === 120 && parseCursor("x") === null, "parseCursor");

  // --- a scripted socket
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; this.readyState = 0; sockets.push(this);
      setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 1); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
    push(frame) { this.onmessage && this.onmessage({ data: JSON.stringify(frame) }); }
    drop(code, reason = "") { this.readyState = 3; this.onclose && this.onclose({ code, reason }); }
    types() { return this.sent.map((f) => f.type); }
  }
  const welcome = { type: "welcome", user_id: 1, role: "athlete", heartbeat_s: 15,
                    expires_at: Date.now() / 1000 + 3600 };
  const make = (extra = {}) => new LiveCoachClient({
    url: "ws://127.0.0.1:1/api/v1/live/ws", token: "t1", WebSocketImpl: FakeSocket,
    backoffBaseMs: 5, backoffMaxMs: 10, rateLimitedMs: 300, ...extra });

  const c = make();
  const seen = [];
  c.on("message", (ev) => seen.push(ev.offset));
  c.subscribe("live:session:7");
  c.connect();
  await until(() => sockets.length === 1 && sockets[0].sent.length === 1, "auth frame");
  let s = sockets[0];
  check(s.sent[0].type === "auth" && s.sent[0].token === "t1", "auth is the first frame");
  s.push(welcome);
  check(c.state === "open", "open after welcome");
  check(s.sent[1].type === "subscribe" && s.sent[1].channels[0] === "live:session:7", "subscribe");
  s.push({ type: "ack", op: "subscribe", channel: "live:session:7", cursor: ["2:-1"] });
  const msg = (o, text) => ({ type: "message", offset: `2:${o}`, channel: "live:session:7",
    channels: ["live:session:7", "live:user:1"], session_id: 7,
    message: { id: o, from: 2, text } });
  s.push(msg(5, "a"));
  s.push(msg(5, "a"));  // a duplicate: not emitted twice
  check(JSON.stringify(seen) === '["2:5"]', `dedup ${seen}`);
  check(JSON.stringify(c.cursors()) === '{"live:session:7":["2:5"]}', "cursor tracked");

  // sent while open, not answered when the socket dies: sent again, first
  const early = c.sendMessage(7, "in flight");
  const inflightId = s.sent.at(-1).id;
  s.drop(1006);
  check(c.state === "waiting", `waiting after 1006, got ${c.state}`);
  const later = c.sendMessage(7, "offline");
  c.typing(7, true);
  c.typing(7, false);
  check(c.queue.map((e) => e.frame.type).join() === "message,message,typing",
        `queue ${c.queue.map((e) => e.frame.type)}`);
  await until(() => sockets.length === 2 && sockets[1].sent.length === 1, "reconnect");
  s = sockets[1];
  s.push(welcome);
  check(s.types().join() === "auth,resume,message,message,typing", `after welcome ${s.types()}`);
  check(JSON.stringify(s.sent[1].cursors) === '{"live:session:7":["2:5"]}', "resume cursors");
  check(s.sent[2].id === inflightId && s.sent[2].message === "in flight", "in-flight frame resent");
  check(s.sent[2].client_message_id === early.clientMessageId, "same client_message_id");
  check(s.sent[3].message === "offline" && s.sent[4].typing === false, "queue order, typing");
  s.push({ type: "ack", op: "message", ref: s.sent[3].id, message_id: 9 });
  check((await later).message_id === 9, "a queued send resolves with its ack");
  s.push({ type: "resumed", channel: "live:session:7", recovered: true, replayed: 0,
           cursor: ["2:8"] });
  check(c.cursors()["live:session:7"][0] === "2:8", "cursor from resumed");

  // 4429: a longer wait
  const t0 = Date.now();
  s.drop(4429, "slow down");
  await until(() => sockets.length === 3, "reconnect after 4429", 2000);
  check(Date.now() - t0 >= 290, `4429 waited ${Date.now() - t0} ms`);
  s = sockets[2];
  await until(() => s.sent.length === 1, "auth after 4429");

  // 4401 with a token hook: a new token, then a new socket
  const c2 = make({ getToken: async () => "t2" });
  c2.connect();
  await until(() => sockets.length === 4 && sockets[3].sent.length === 1, "c2 auth");
  sockets[3].drop(4401, "expired");
  await until(() => sockets.length === 5 && sockets[4].sent.length === 1, "c2 reconnect");
  check(sockets[4].sent[0].token === "t2", "the refreshed token is used");
  // 4401 without one: stop and ask
  const c3 = make();
  let asked = false;
  c3.on("auth_required", () => { asked = true; });
  c3.connect();
  await until(() => sockets.length === 6 && sockets[5].sent.length === 1, "c3 auth");
  sockets[5].drop(4401, "bad token");
  check(c3.state === "stopped" && asked, "4401 without getToken stops and asks");
  // 4403: stop for good
  sockets[4].push(welcome);
  sockets[4].drop(4403, "not yours");
  await sleep(100);
  check(c2.state === "stopped" && sockets.length === 6, "4403 stops without reconnecting");
  // 1001 (edge shutting down) and 4408 (idle): reconnect
  s.push(welcome);
  s.drop(1001, "edge shutting down");
  await until(() => sockets.length === 7, "reconnect after 1001");
  sockets[6].push(welcome);
  sockets[6].drop(4408, "idle");
  await until(() => sockets.length === 8, "reconnect after 4408");
  // a socket that stays open but answers nothing: dropped after the pong timeout
  const c4 = make({ heartbeatMs: 250, pongTimeoutMs: 100 });
  c4.connect();
  await until(() => sockets.length === 9 && sockets[8].sent.length === 1, "c4 auth");
  sockets[8].push(welcome);
  await until(() => sockets[8].types().includes("ping"), "c4 pings", 1000);
  await until(() => sockets.length === 10, "c4 reconnects after a silent socket", 2000);
  // while pongs come back, no reconnect
  const c5 = make({ heartbeatMs: 250, pongTimeoutMs: 100 });
  c5.connect();
  await until(() => sockets.length === 11 && sockets[10].sent.length === 1, "c5 auth");
  const s5 = sockets[10];
  s5.push(welcome);
  const origSend = s5.send.bind(s5);
  s5.send = (text) => { origSend(text); const f = JSON.parse(text);
    if (f.type === "ping") setTimeout(() => s5.push({ type: "pong", ref: f.id }), 5); };
  await sleep(1200);
  check(sockets.length === 11 && c5.state === "open", `c5 stayed (${sockets.length})`);
  check(s5.types().filter((t) => t === "ping").length >= 3, "c5 pinged");
  // a resume the edge fails (internal): back to the cursors sent, on a new socket
  const c6 = make();
  c6.subscribe("live:session:9", "live:session:10");
  c6.connect();
  await until(() => sockets.length === 12 && sockets[11].sent.length === 1, "c6 auth");
  let s6 = sockets[11];
  s6.push(welcome);
  s6.push({ type: "ack", op: "subscribe", channel: "live:session:9", cursor: ["1:3"] });
  s6.push({ type: "ack", op: "subscribe", channel: "live:session:10", cursor: ["2:7"] });
  s6.drop(1006);
  await until(() => sockets.length === 13 && sockets[12].sent.length === 1, "c6 reconnect");
  s6 = sockets[12];
  s6.push(welcome);
  const r1 = s6.sent[1];
  check(r1.type === "resume", "c6 resumes");
  // a live event released after a failed replay, then the error
  s6.push({ type: "metrics_update", offset: "1:50", channel: "live:session:9",
            channels: ["live:session:9"], session_id: 9, metrics: {} });
  s6.push({ type: "error", code: "internal", message: "boom", ref: r1.id });
  await until(() => sockets.length === 14 && sockets[13].sent.length === 1, "c6 again");
  s6 = sockets[13];
  s6.push(welcome);
  check(JSON.stringify(s6.sent[1].cursors) ===
        '{"live:session:9":["1:3"],"live:session:10":["2:7"]}',
        `c6 resumes from the cursors sent: ${JSON.stringify(s6.sent[1].cursors)}`);
  // one session gone: the others resume one by one, from the cursors sent
  s6.push({ type: "error", code: "not_found", message: "no live session 10",
            ref: s6.sent[1].id });
  const singles = s6.sent.slice(2).filter((f) => f.type === "resume");
  check(singles.length === 2 && JSON.stringify(singles[0].cursors) ===
        '{"live:session:9":["1:3"]}', `split resume ${JSON.stringify(singles)}`);
  s6.push({ type: "error", code: "not_found", message: "gone", ref: singles[1].id });
  s6.push({ type: "resumed", channel: "live:session:9", recovered: true, replayed: 1,
            cursor: ["1:51"] });
  check(JSON.stringify(c6.cursors()) === '{"live:session:9":["1:51"]}',
        `gone channel forgotten ${JSON.stringify(c6.cursors())}`);
  check(c6.pendingResume.size === 0, "no resume pending");
  // a subscription the edge ends (a coach link removed): reported, and not resumed
  const c7 = make();
  const revoked = [];
  c7.on("error", (ev) => revoked.push(ev));
  c7.subscribe("live:user:4", "live:session:11");
  c7.connect();
  const n7 = sockets.length;
  await until(() => sockets.length === n7 && sockets[n7 - 1].sent.length === 1, "c7 auth");
  let s7 = sockets[n7 - 1];
  s7.push(welcome);
  s7.push({ type: "ack", op: "subscribe", channel: "live:user:4", cursor: ["0:1"] });
  s7.push({ type: "ack", op: "subscribe", channel: "live:session:11", cursor: ["3:2"] });
  s7.push({ type: "error", code: "access_revoked", channel: "live:user:4", subscribed: false,
            message: "no longer allowed to see athlete 4" });
  check(revoked.length === 1 && revoked[0].code === "access_revoked" &&
        revoked[0].channel === "live:user:4", `revoked reported ${JSON.stringify(revoked)}`);
  s7.drop(1006);
  await until(() => sockets.length === n7 + 1 && sockets[n7].sent.length === 1, "c7 reconnect");
  s7 = sockets[n7];
  s7.push(welcome);
  const again = JSON.stringify(s7.sent[1]);
  check(!again.includes("live:user:4") && again.includes("live:session:11"),
        `revoked channel not resumed: ${again}`);
  // an alert published again (same id, later offset; issue 15 item 18): emitted once
  const c8 = make();
  const alerts = [];
  c8.on("alert", (ev) => alerts.push(ev.offset));
  c8.subscribe("live:session:7");
  const n8 = sockets.length;
  c8.connect();
  await until(() => sockets.length === n8 + 1 && sockets[n8].sent.length === 1, "c8 auth");
  const s8 = sockets[n8];
  s8.push(welcome);
  const alert = (o, id) => ({ type: "alert", offset: `2:${o}`, channel: "live:session:7",
    channels: ["live:session:7"], session_id: 7, alert: { id, severity: "warning" } });
  s8.push(alert(6, "al-1"));
  s8.push(alert(7, "al-2"));
  s8.push(alert(8, "al-1"));
  check(JSON.stringify(alerts) === '["2:6","2:7"]', `alert dedup ${alerts}`);
  check(JSON.stringify(c8.cursors()) === '{"live:session:7":["2:8"]}', "cursor past the repeat");
  // a resume refused for the user's replay budget (issue 15 item 7): asked again on the
  // same socket after retry_after_s, from the same cursors
  s8.drop(1006);
  await until(() => sockets.length === n8 + 2 && sockets[n8 + 1].sent.length === 1, "c8 back");
  const s8b = sockets[n8 + 1];
  s8b.push(welcome);
  const refused = s8b.sent.find((f) => f.type === "resume");
  check(refused && JSON.stringify(refused.cursors) === '{"live:session:7":["2:8"]}',
        `resume sent ${JSON.stringify(s8b.sent)}`);
  s8b.push({ type: "error", code: "rate_limited", ref: refused.id, retry_after_s: 0.2,
             message: "replayed too much lately; resume later" });
  await sleep(100);
  check(s8b.sent.filter((f) => f.type === "resume").length === 1, "not before retry_after_s");
  await until(() => s8b.sent.filter((f) => f.type === "resume").length === 2, "resume again");
  const again8 = s8b.sent.filter((f) => f.type === "resume")[1];
  check(JSON.stringify(again8.cursors) === '{"live:session:7":["2:8"]}', "same cursors");
  check(sockets.length === n8 + 2, "no reconnect for a rate-limited resume");
  for (const client of [c, c2, c3, c4, c5, c6, c7, c8]) client.close();
  return failures;
}
"""


@needs_browser
async def test_livecoach_js_logic_with_a_scripted_socket(live_edge: Edge) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _wire_checked(await browser.new_page())
            await page.goto(f"{live_edge.base}/healthz")
            failures = await page.evaluate(_CLIENT_LOGIC)
        finally:
            await browser.close()
    assert failures == []
