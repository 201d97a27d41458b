"""Worker and edge start as an unprivileged account in a folder it cannot write.

This is the container's situation (user ``livecoach``, current directory not its own)
and any server's where the service account differs from the one that installed
livecoach. Every working folder must then come from ``LIVECOACH_DATA_DIR``.

The account is ``nobody``. The test's own Python may live where other accounts cannot
enter (``/root/.pyenv`` here), so the processes run on Debian's ``/usr/bin/python3``
(3.11) in a virtualenv whose only addition is this checkout's installed packages.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from pipeline.embedded import free_port
from tests.conftest import make_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYSTEM_PYTHON = Path("/usr/bin/python3")
COMPOSE = Path(__file__).resolve().parents[1] / "docker" / "compose.yaml"
ACCOUNT = "nobody"
_START_TIMEOUT_S = 90.0


def _skip_unless_possible() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run processes as another account")
    try:
        account = pwd.getpwnam(ACCOUNT)
    except KeyError:
        pytest.skip(f"no {ACCOUNT!r} account")
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"no {SYSTEM_PYTHON}")
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if version != "True":
        pytest.skip(f"{SYSTEM_PYTHON} is not Python 3.11 (our packages' extensions need it)")
    return account


@pytest.fixture
def account_python() -> Iterator[tuple[pwd.struct_passwd, Path]]:
    """(account, a Python it can run with livecoach and its dependencies importable)."""
    account = _skip_unless_possible()
    root = make_data_dir("livecoach-venv-")
    root.chmod(0o755)
    try:
        venv = root / "venv"
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        site = Path(sysconfig.get_paths()["purelib"])  # this checkout's packages
        (venv / "lib" / "python3.11" / "site-packages" / "livecoach-under-test.pth").write_text(
            f"import site; site.addsitedir({str(site)!r})\n"
        )
        python = venv / "bin" / "python"
        probe = subprocess.run(
            [str(python), "-c", "import pipeline.cli, faust, psycopg"],
            user=account.pw_uid, group=account.pw_gid, extra_groups=[],
            capture_output=True, text=True, check=False, cwd="/",
        )  # fmt: skip
        if probe.returncode != 0:
            pytest.skip(f"{ACCOUNT} cannot import this checkout: {probe.stderr[-300:]}")
        yield account, python
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _health_check(service: str, port: int) -> list[str]:
    """The compose file's health check of ``service``, with its URL's port set to ``port``."""
    test = yaml.safe_load(COMPOSE.read_text())["services"][service]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "livecoach"]
    argv = list(test[2:])
    url = urlsplit(argv[argv.index("--ready") + 1])
    argv[argv.index("--ready") + 1] = urlunsplit(url._replace(netloc=f"{url.hostname}:{port}"))
    return argv


def _ready(url: str) -> bool:
    with (
        contextlib.suppress(urllib.error.URLError, OSError),
        urllib.request.urlopen(url, timeout=2) as resp,
    ):
        return bool(resp.status == 200)
    return False


def test_worker_and_web_start_as_nobody_in_an_unwritable_folder(
    account_python: tuple[pwd.struct_passwd, Path], redis_url: str, database_url: str
) -> None:
    account, python = account_python
    data_dir = make_data_dir()
    os.chown(data_dir, account.pw_uid, account.pw_gid)
    data_dir.chmod(0o700)
    cwd = make_data_dir("livecoach-cwd-")
    cwd.chmod(0o755)  # root's: the account may enter it but not write in it
    web_port, worker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env.update(
        HOME=account.pw_dir,
        LIVECOACH_DATA_DIR=str(data_dir),
        LIVECOACH_REDIS_URL=redis_url,
        LIVECOACH_DATABASE_URL=database_url,
        LIVECOACH_WORKER_WEB_PORT=str(worker_port),
    )
    env.pop("TMPDIR", None)  # the suite's TMPDIR may be closed to the account too
    output = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    procs = [
        subprocess.Popen(
            [str(python), "-m", "pipeline.cli", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
        )
        for args in (
            ["worker"],
            ["web", "--host", "127.0.0.1", "--port", str(web_port)],
        )
    ]
    try:
        waiting = [f"http://127.0.0.1:{web_port}/readyz", f"http://127.0.0.1:{worker_port}/"]
        deadline = time.monotonic() + _START_TIMEOUT_S
        while waiting and time.monotonic() < deadline:
            exited = [p.args for p in procs if p.poll() is not None]
            if exited:
                break
            if _ready(waiting[0]):
                waiting.pop(0)
            else:
                time.sleep(0.3)
        output.seek(0)
        log = output.read().decode(errors="replace")
        assert not waiting, f"not ready: {waiting}\n{log[-3000:]}"
        assert "PermissionError" not in log, log[-3000:]
        # The compose file's health checks, aimed at these processes' ports, pass...
        health = {name: _health_check(name, {"web": web_port, "worker": worker_port}[name])
                  for name in ("worker", "web")}  # fmt: skip
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        for name, argv in health.items():
            done = subprocess.run([str(python), "-m", "pipeline.cli", *argv], env=env, cwd=cwd,
                                  capture_output=True, text=True, timeout=60, **run_as)  # fmt: skip
            assert done.returncode == 0, f"{name}: {done.stderr}"
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        statuses = [proc.wait(60) for proc in procs]
        assert statuses == [0, 0], log[-3000:]
        # ...and fail once they are gone.
        for name, argv in health.items():
            done = subprocess.run([str(python), "-m", "pipeline.cli", *argv], env=env, cwd=cwd,
                                  capture_output=True, text=True, timeout=60, **run_as)  # fmt: skip
            assert done.returncode == 1, f"{name}: {done.stdout}{done.stderr}"
            assert "is not ready" in done.stderr
        assert list(cwd.iterdir()) == [], "something was written to the current folder"
        faust = data_dir / "faust"
        assert {p.name for p in faust.iterdir()} == {"livecoach", "livecoach-store"}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)
