"""The generated JWT secret: one value, private from its creation (issue 15, item 14)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from tests.ids import sid

ROOT = Path(__file__).resolve().parents[1]

#: Each process sleeps until an agreed instant, then asks for the secret, so that the
#: processes really race on a folder where no secret exists yet. umask 0: whatever mode
#: the file gets, it gets from its creation call, not from a lucky umask.
_RACER = textwrap.dedent(
    """
    import os, sys, time
    os.umask(0)
    from pipeline.settings import load_settings
    settings = load_settings(data_dir=sys.argv[1])
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    print(settings.jwt_secret_value())
    """
)


@pytest.mark.parametrize("round_", range(3))
def test_processes_starting_together_agree_on_one_secret(tmp_path: Path, round_: int) -> None:
    data_dir = tmp_path / "fresh"
    start_at = time.time() + 2.0  # time enough for every interpreter to import
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    command = [sys.executable, "-c", _RACER, str(data_dir), str(start_at)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, **pipes) for _ in range(6)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    secrets = {out.strip() for out, _ in outputs}
    assert len(secrets) == 1, f"processes disagree: {secrets}"
    secret = secrets.pop()
    assert len(secret) >= 32
    path = data_dir / "jwt_secret"
    assert path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_an_old_world_readable_secret_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "jwt_secret"
    path.write_text("x" * 64)
    path.chmod(0o644)
    assert load_settings(data_dir=tmp_path).jwt_secret_value() == "x" * 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text("")
    with pytest.raises(ConfigError, match="delete the file") as caught:
        load_settings(data_dir=tmp_path).jwt_secret_value()
    assert caught.value.variable == "LIVECOACH_DATA_DIR"


@pytest.mark.parametrize("secret", ["", "   ", "short", "s" * 31])
def test_a_short_configured_secret_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes") as caught:
        load_settings(jwt_secret=secret)
    assert caught.value.variable == "LIVECOACH_JWT_SECRET"


def test_the_cli_refuses_a_short_secret_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env.update(LIVECOACH_JWT_SECRET="", LIVECOACH_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "token", "--user", sid(1), "--role", "athlete"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().startswith("livecoach: error: LIVECOACH_JWT_SECRET: expected")
    assert "Traceback" not in done.stderr
