"""An edge in a process of its own (``livecoach web``), for the tests that measure its
memory or kill it with SIGKILL: in-process edges share the test's memory and die with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import psutil

from pipeline.embedded import free_port

SECRET = "test-secret-of-at-least-32-bytes-for-hs256!"


@dataclass
class EdgeProcess:
    """Start, kill and restart one ``livecoach web`` on a fixed loopback port."""

    #: The module run as ``python -m`` (its arguments are ``livecoach``'s).
    module: ClassVar[str] = "pipeline.cli"

    redis_url: str
    database_url: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    live_partitions: int = 4

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def start(self, wait_s: float = 30.0) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")},
            "LIVECOACH_REDIS_URL": self.redis_url,
            "LIVECOACH_DATABASE_URL": self.database_url,
            "LIVECOACH_JWT_SECRET": SECRET,
            "LIVECOACH_DATA_DIR": str(self.data_dir),
            "LIVECOACH_SAMPLES_PARTITIONS": str(self.live_partitions),
            "LIVECOACH_LIVE_PARTITIONS": str(self.live_partitions),
            "LIVECOACH_LOG_LEVEL": "WARNING",
            # The suite's fixed sample times (see tests/conftest.py).
            "LIVECOACH_CLIENT_TIME_PAST_S": os.environ.get("LIVECOACH_CLIENT_TIME_PAST_S", ""),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "web", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the edge exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("the edge did not answer /healthz in time")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def edge_process(redis_url: str, database_url: str, data_dir: Path) -> Iterator[EdgeProcess]:
    with EdgeProcess(redis_url, database_url, data_dir) as edge:
        yield edge
