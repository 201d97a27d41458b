"""``livecoach up`` from nothing to live metrics in ``livecoach watch`` (real processes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pipeline.embedded import free_port
from tests.conftest import make_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    return {**env, **extra}


def test_up_shows_live_metrics_in_watch_within_30_s_and_stops_cleanly() -> None:
    data_dir = make_data_dir()
    port = free_port()
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", "--port", str(port), "--speed", "5"],
        env=_env(LIVECOACH_DATA_DIR=str(data_dir), LIVECOACH_LOG_LEVEL="WARNING"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        tokens: dict[str, str] = {}
        user = None
        while len(tokens) < 2 or user is None:
            line = up.stdout.readline()
            assert line, "livecoach up exited before printing its tokens"
            if m := re.match(r"(athlete|coach) ([0-9a-f-]{36}) token:\s+(\S+)", line):
                tokens[m[1]] = m[3]
                if m[1] == "athlete":
                    user = m[2]
        descendants = [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
        watch = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "watch", "--user", user, "--token",
             tokens["coach"], "--url", f"http://127.0.0.1:{port}", "--count", "3"],
            env=_env(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert watch.returncode == 0, watch.stdout + watch.stderr
        lines = watch.stdout.strip().splitlines()
        assert any("HR" in line and " W " in line for line in lines), lines
        assert elapsed < 30, f"live metrics took {elapsed:.1f} s"
        print(f"first live metrics in watch after {elapsed:.1f} s")

        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in descendants):
            time.sleep(0.2)
        alive = [
            p
            for p in descendants
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        assert not alive, f"left running after Ctrl-C: {alive}"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()
