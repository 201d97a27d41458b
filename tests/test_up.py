"""``livecoach up`` from nothing to live metrics in ``livecoach watch`` (real processes)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.embedded import free_port
from tests.conftest import make_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Most lines ``up`` may print before "Ctrl-C stops everything." (a calm terminal).
MAX_LINES = 12


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    return {**env, **extra}


def test_up_shows_live_metrics_in_watch_within_30_s_and_stops_cleanly() -> None:
    data_dir = make_data_dir()
    cwd = make_data_dir("livecoach-cwd-")
    port = free_port()
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up", "--port", str(port), "--speed", "5"],
        env=_env(LIVECOACH_DATA_DIR=str(data_dir), LIVECOACH_LOG_LEVEL="INFO"), cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        printed: list[str] = []
        while not printed or printed[-1] != "Ctrl-C stops everything.":
            line = up.stdout.readline()
            assert line, f"livecoach up exited early: {printed}"
            printed.append(line.rstrip("\n"))
        assert len(printed) <= MAX_LINES, printed
        assert re.fullmatch(r"livecoach up: starting .* ready in [\d.]+ s", printed[0]), printed
        text = "\n".join(printed)
        tokens = dict(re.findall(r"^(athlete|coach) [0-9a-f-]{36} token:\s+(\S+)$", text, re.M))
        user = re.search(r"^athlete ([0-9a-f-]{36}) token:", text, re.M)
        assert user is not None and set(tokens) == {"athlete", "coach"}, text
        athlete_id = user[1]
        assert athlete_id
        base = f"http://127.0.0.1:{port}"
        # The coach's grid shows every linked athlete: no ?athletes= needed.
        coach_link = f"{base}/dashboard#token={tokens['coach']}"
        assert f"coach dashboard:   {coach_link}" in printed
        assert sum(line.startswith("runner dashboard:") for line in printed) == 1
        # The links are kept (0600) and printed again on demand, token for token.
        links = data_dir / "links.txt"
        assert links.stat().st_mode & 0o777 == 0o600
        block = links.read_text()
        assert block in text + "\n"
        again = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "links"],
            env=_env(LIVECOACH_DATA_DIR=str(data_dir)), capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
        assert again.returncode == 0 and again.stdout == block, again.stderr

        # The printed watch command works as printed, without an activated virtualenv.
        watch_line = next(line for line in printed if line.startswith("watch the demo:"))
        watch_argv = shlex.split(watch_line.removeprefix("watch the demo:"))
        assert Path(watch_argv[0]).is_absolute() and Path(watch_argv[0]).exists(), watch_argv
        path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                               if not p.startswith(sys.prefix))  # fmt: skip
        descendants = [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
        watch = subprocess.run(
            [*watch_argv, "--count", "3"], env={**_env(), "PATH": path}, capture_output=True,
            text=True, timeout=30, stdin=subprocess.DEVNULL,
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
        # Nothing more on the terminal: the chatter went to the log in the data folder.
        assert up.stdout.read() == ""
        assert up.stderr is not None and up.stderr.read() == ""
        assert (data_dir / "up.log").stat().st_mode & 0o777 == 0o600
        log = (data_dir / "up.log").read_text()
        assert "Worker" in log and "aiohttp.access" in log
        assert not links.exists(), "links of a stopped up are kept"
        # Every working folder is under the data folder; none in the current one.
        assert list(cwd.iterdir()) == []
        assert {p.name for p in (data_dir / "faust").iterdir()} == {"livecoach", "livecoach-store"}
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for stream in (up.stdout, up.stderr):
            if stream is not None:
                stream.close()
