"""The demo as a new user sees it: ``livecoach up --athletes 10`` (real processes: the
edge, the agents, Redis, PostgreSQL), its printed links opened in Chromium. The coach's
grid shows ten athletes by name, online, with alerts the agents raised in the first
minutes of the workouts; the rider's view has charts with data, zone bands and an alert
in plain language. ``LIVECOACH_SCREENSHOTS=<folder>`` saves both views there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.embedded import free_port
from tests.conftest import make_data_dir
from tests.web.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, needs_browser

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ATHLETES = 10
#: Workout seconds per wall second: minute 4 of the workouts after 40 s.
SPEED = 6
ALERT = re.compile(
    r"(Heart rate \d+ bpm, (above|below) (your|the interval's) \d+ bpm "
    r"(ceiling|floor|target top|target bottom)"
    r"|Power \d+ W, (above|below) (your|the interval's) \d+ W "
    r"(ceiling|floor|target top|target bottom)"
    r"|Pace \d+:\d\d /km, (slower|faster) than (your|the interval's) \d+:\d\d /km "
    r"(limit|target))"
)


def _links(up: subprocess.Popen[str]) -> dict[str, str]:
    assert up.stdout is not None
    printed: list[str] = []
    while not printed or printed[-1] != "Ctrl-C stops everything.":
        line = up.stdout.readline()
        assert line, f"livecoach up exited early: {printed}"
        printed.append(line.rstrip("\n"))
    found = re.findall(r"^(\w+) dashboard:\s+(\S+)$", "\n".join(printed), re.M)
    return dict(found)


@pytest.fixture
def demo() -> Iterator[dict[str, str]]:
    """``livecoach up`` running; the dashboard links it printed, by name."""
    data_dir = make_data_dir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", "--port", str(port),
         "--athletes", str(ATHLETES), "--speed", str(SPEED), "--once"],
        env={**env, "LIVECOACH_DATA_DIR": str(data_dir)}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        yield _links(up)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()


@needs_browser
async def test_the_demo_in_the_first_minutes(demo: dict[str, str]) -> None:
    from playwright.async_api import async_playwright

    links = demo
    shots = os.environ.get("LIVECOACH_SCREENSHOTS")
    assert set(links) == {"athlete", "runner", "coach"}, links
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            size = {"width": 1280, "height": 900}
            coach: Any = await (await browser.new_context(viewport=size)).new_page()
            await coach.goto(links["coach"])
            rider: Any = await (await browser.new_context(viewport=size)).new_page()
            await rider.goto(links["athlete"])
            # Ten athletes, by name, online; alerts from the agents within minutes.
            await coach.wait_for_function(
                f"() => document.querySelectorAll('.athlete-card[data-online=\"true\"]')"
                f".length === {ATHLETES}",
                timeout=60_000,
            )
            names = await coach.locator(".athlete-card .name").all_text_contents()
            assert names[:2] == ["Ada Runner", "Ben Rider"] and len(set(names)) == ATHLETES
            await coach.wait_for_function(
                "() => [...document.querySelectorAll('.athlete-card .alerts-count')]"
                ".filter((e) => e.textContent).length >= 3",
                timeout=90_000,
            )
            # The rider: charts with data, zones, an alert in plain language.
            await rider.wait_for_function(
                "() => { const c = window.livecoach.ui.charts;"
                " return c.heart_rate.series.points > 30 && c.power.series.points > 30"
                " && c.heart_rate.bands.length === 5 && c.heart_rate.draws > 0; }",
                timeout=60_000,
            )
            await rider.locator("li.alert").first.wait_for(timeout=60_000)
            texts = await rider.locator("li.alert .alert-text").all_text_contents()
            assert any(ALERT.search(t) for t in texts), texts
            assert await rider.locator("#watching").text_content() == (
                "Coach Demo Coach is watching"
            )
            if shots:
                os.makedirs(shots, exist_ok=True)
                await coach.screenshot(path=f"{shots}/demo-coach-grid.png", full_page=True)
                await rider.screenshot(path=f"{shots}/demo-rider.png", full_page=True)
        finally:
            await browser.close()
