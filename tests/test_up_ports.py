"""``livecoach up`` and ``livecoach web`` on a port in use: one line, exit 2, nothing started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.embedded import free_port
from tests.conftest import make_data_dir


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _run(*args: str, data_dir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env={**env, "LIVECOACH_DATA_DIR": str(data_dir), **extra},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "env", "variable"),
    [
        (("up", "--port", "{port}"), {}, "--port"),
        (("up",), {"LIVECOACH_WEB_PORT": "{port}"}, "LIVECOACH_WEB_PORT"),
        (("web", "--port", "{port}"), {}, "--port"),
        (("up", "--port", "0"), {"LIVECOACH_WORKER_WEB_PORT": "{port}"},
         "LIVECOACH_WORKER_WEB_PORT"),
    ],
)  # fmt: skip
def test_port_in_use_is_one_line_and_exit_2(
    busy_port: int, args: tuple[str, ...], env: dict[str, str], variable: str
) -> None:
    data_dir = make_data_dir()
    result = _run(
        *(a.format(port=busy_port) for a in args),
        data_dir=data_dir,
        **{k: v.format(port=busy_port) for k, v in env.items()},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"livecoach: error: {variable}: cannot listen on 127.0.0.1:{busy_port}: in use by "
        "another program (another `livecoach up`?); choose another port"
    ]
    assert result.stdout == ""
    # Checked before anything started: no servers, no files.
    assert list(data_dir.iterdir()) == []


def test_links_without_a_running_up_says_so() -> None:
    data_dir = make_data_dir()
    result = _run("links", data_dir=data_dir)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"livecoach: error: no links in {data_dir}/links.txt: `livecoach up` is not running "
        f"with this data folder (LIVECOACH_DATA_DIR={data_dir})"
    )


def test_free_ports_come_from_below_the_ephemeral_range_and_never_repeat() -> None:
    """An outgoing connection's local port is never one :func:`free_port` hands out."""
    low, _ = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports), [p for p in ports if p >= low][:5]
    # and each is really free: a listener can take it
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", ports[-1]))
        sock.listen()
