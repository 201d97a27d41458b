"""``livecoach bench transport``: events per second through one Faust worker on Redis.

Three agents, each run on a backlog of ``events`` events already in the source topic
(so the figure is the worker's processing rate, not the feeder's):

* ``count``: counts events (no output);
* ``forward``: sends every event on to another topic;
* ``forward_table``: updates a table (so a changelog record too) and forwards.

In the same run, on the same server, the raw redis-py rates for the same payloads:
pipelined ``XADD`` (100 a pipeline) and ``XREAD`` (1,000 a call). Each figure is the
median of ``runs`` runs; the report gives both and their ratio.

The worker runs as ``python -m bench.transport worker`` (this module builds
its Faust app from ``LC_BENCH_*`` environment variables when run that way).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.servers import private_redis
from pipeline.transport import streams
from pipeline.transport.clients import redis_client

SCENARIOS = ("count", "forward", "forward_table")
PARTITIONS = 4
KEYS = 1000
START_KEY = "livecoach:bench:start"
DONE_KEY = "livecoach:bench:done"


def _payload(n: int) -> bytes:
    return json.dumps({"n": n, "hr": 150, "pace": 290.5, "power": 240}).encode()


# --- the worker side ------------------------------------------------------------------


def make_app() -> Any:
    """The benchmark's Faust app, configured from the environment."""
    import faust

    # Faust's terminal spinner sets the root logger to DEBUG (the handler filters), so
    # every logger.debug() in Faust's per-event path builds a record: ~7 % of the time.
    for name in ("faust", "mode"):
        logging.getLogger(name).setLevel(logging.WARNING)
    scenario = os.environ["LC_BENCH_SCENARIO"]
    total = int(os.environ["LC_BENCH_EVENTS"])
    url = os.environ["LC_BENCH_BROKER"]
    app = faust.App(
        "lc-bench",
        broker=url,
        store="memory://",
        topic_partitions=PARTITIONS,
        web_enabled=False,
        datadir=os.environ.get("LC_BENCH_DATA_DIR", tempfile.gettempdir()),
    )
    source = app.topic("bench-in", partitions=PARTITIONS, value_serializer="json")
    out = app.topic("bench-out", partitions=PARTITIONS, value_serializer="json")
    table = app.Table("bench-table", default=int, partitions=PARTITIONS)
    seen = 0
    client: aioredis.Redis | None = None

    async def mark(key: str) -> None:
        nonlocal client
        if client is None:
            client = redis_client(url)
        await client.set(key, repr(time.time()))

    async def tick() -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            await mark(START_KEY)
        if seen == total and scenario == "count":
            await mark(DONE_KEY)

    if scenario == "count":

        @app.agent(source)
        async def count(stream: Any) -> None:
            async for _value in stream:
                await tick()

    elif scenario == "forward":

        @app.agent(source)
        async def forward(stream: Any) -> None:
            async for event in stream.events():
                await tick()
                await out.send(key=event.key, value=event.value)

    else:

        @app.agent(source)
        async def forward_table(stream: Any) -> None:
            async for event in stream.events():
                await tick()
                table[event.key] += 1
                await out.send(key=event.key, value=event.value)

    return app


# --- the driver side ------------------------------------------------------------------


@contextmanager
def _server(redis_url: str | None) -> Iterator[str]:
    if redis_url:
        yield redis_url
        return
    with private_redis("lc-bench-") as url:
        yield url


async def _fill(url: str, topic: str, events: int) -> None:
    r = redis_client(url)
    try:
        batch: dict[int, list[streams.Entry]] = {}
        now = int(time.time() * 1000)
        for n in range(events):
            key = f"athlete-{n % KEYS}".encode()
            p = streams.partition_for_key(key, PARTITIONS)
            batch.setdefault(p, []).append((key, _payload(n), None, now))
            if n % 1000 == 999:
                for p2, entries in batch.items():
                    await streams.append(r, topic, p2, entries)
                batch = {}
        for p2, entries in batch.items():
            await streams.append(r, topic, p2, entries)
    finally:
        await r.aclose()


async def _raw_rates(url: str, events: int) -> tuple[float, float]:
    """(XADD/s, XREAD/s) with redis-py alone: pipelines of 100, reads of 1,000."""
    r = redis_client(url)
    key = "livecoach:bench:raw"
    try:
        await r.delete(key)
        payloads = [_payload(n) for n in range(events)]
        started = time.perf_counter()
        for i in range(0, events, 100):
            async with r.pipeline(transaction=False) as pipe:
                for value in payloads[i : i + 100]:
                    pipe.xadd(key, {b"v": value, b"t": b"0", b"k": b"athlete-1"})
                await pipe.execute()
        xadd_rate = events / (time.perf_counter() - started)
        started = time.perf_counter()
        last = "0-0"
        read = 0
        while read < events:
            reply: Any = await r.xread({key: last}, count=1000)
            entries = reply[0][1]
            read += len(entries)
            last = entries[-1][0]
        xread_rate = events / (time.perf_counter() - started)
        await r.delete(key)
        return xadd_rate, xread_rate
    finally:
        await r.aclose()


async def _wait_float(r: aioredis.Redis, key: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await r.get(key)
        if value is not None:
            return float(value)
        await asyncio.sleep(0.01)
    raise TimeoutError(f"benchmark worker did not set {key} in {timeout_s:.0f} s")


async def _out_len(r: aioredis.Redis) -> int:
    lengths = [await r.xlen(streams.stream_key("bench-out", p)) for p in range(PARTITIONS)]
    return sum(lengths)


def _has_uvloop() -> bool:
    """uvloop (an optional extra) makes Faust's event-loop bookkeeping cheaper."""
    if os.environ.get("LIVECOACH_BENCH_LOOP", "uvloop") != "uvloop":
        return False
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def _start_worker(url: str, scenario: str, events: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LC_BENCH_SCENARIO": scenario,
        "LC_BENCH_EVENTS": str(events),
        "LC_BENCH_BROKER": url,
        "LC_BENCH_DATA_DIR": str(data_dir),
    }
    log = (data_dir / "worker.log").open("ab")
    loop = ["-L", "uvloop"] if _has_uvloop() else []
    return subprocess.Popen(
        [sys.executable, "-m", "bench.transport", *loop, "worker", "-l", "warn"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _run_scenario(
    url: str, scenario: str, events: int, *, profile: Path | None = None
) -> float:
    """Events per second through one worker for one scenario (one run)."""
    r = redis_client(url)
    data_dir = Path(tempfile.mkdtemp(prefix="lc-bench-worker-"))
    try:
        await r.flushdb()
        await _fill(url, "bench-in", events)
        worker = _start_worker(url, scenario, events, data_dir)
        spy = None
        try:
            started = await _wait_float(r, START_KEY, 60)
            if profile is not None:
                spy = subprocess.Popen(  # noqa: ASYNC220 (a benchmark driver, not a server)
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                     str(worker.pid), "--format", "raw", "--rate", "200", "-o", str(profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            if scenario == "count":
                finished = await _wait_float(r, DONE_KEY, 120)
            else:
                deadline = time.monotonic() + 120
                while await _out_len(r) < events:
                    if time.monotonic() > deadline:
                        raise TimeoutError("benchmark worker did not forward every event")
                    await asyncio.sleep(0.005)
                finished = time.time()
            return events / (finished - started)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    finally:
        await r.aclose()
        shutil.rmtree(data_dir, ignore_errors=True)


def summarize_profile(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Share of samples per function (self time) from a py-spy ``--format raw`` file."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.split(";")[-1]
        counts[leaf] = counts.get(leaf, 0) + int(n)
        total += int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [(name, count / total) for name, count in ranked] if total else []


def summarize_by_module(path: Path, top: int = 12) -> list[tuple[str, float]]:
    """Share of samples by the package of the innermost frame (faust, asyncio, redis...)."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.split(";")[-1]
        where = leaf.rpartition("(")[2].rstrip(")")
        first = where.replace("\\", "/").split("/")[0]
        package = first.split(":")[0].removesuffix(".py") if first else "other"
        counts[package] = counts.get(package, 0) + int(n)
        total += int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [(name, count / total) for name, count in ranked] if total else []


async def bench_compaction(url: str, updates: int, keys: int = KEYS) -> dict[str, Any]:
    """``updates`` table updates to ``keys`` keys in one changelog partition, compacted.

    Reports the changelog length before and after, the compaction time, and the
    entries (and time) a recovery reads afterwards (all of what remains, in order).
    """
    from pipeline.transport.compaction import Compactor

    r = redis_client(url)
    topic = "bench-table-changelog"
    try:
        await r.flushdb()
        now = int(time.time() * 1000)
        started = time.perf_counter()
        for base in range(0, updates, 5000):
            entries: list[streams.Entry] = [
                (f'"athlete-{i % keys}"'.encode(), str(i).encode(), None, now)
                for i in range(base, min(updates, base + 5000))
            ]
            await streams.append(r, topic, 0, entries)
        write_s = time.perf_counter() - started
        before = await r.xlen(streams.stream_key(topic, 0))
        started = time.perf_counter()
        deleted = await Compactor(r).compact(topic, 0)
        compact_s = time.perf_counter() - started
        started = time.perf_counter()
        read, offset = 0, 0
        while True:
            batch = await streams.read(r, topic, 0, offset, count=5000)
            if not batch:
                break
            read += len(batch)
            offset = batch[-1][0] + 1
        recovery_s = time.perf_counter() - started
        return {
            "updates": updates,
            "keys": keys,
            "write_s": round(write_s, 2),
            "changelog_entries_before": before,
            "deleted": deleted,
            "changelog_entries_after": await r.xlen(streams.stream_key(topic, 0)),
            "compaction_s": round(compact_s, 2),
            "recovery_entries_read": read,
            "recovery_read_s": round(recovery_s, 3),
            "highwater": await streams.highwater(r, topic, 0),
        }
    finally:
        await r.aclose()


def bench_transport(
    *,
    redis_url: str | None = None,
    events: int = 20_000,
    runs: int = 3,
    profile_dir: Path | None = None,
    compaction_updates: int = 0,
) -> dict[str, Any]:
    """Run the benchmark; returns the report (also what the CLI prints as JSON)."""

    async def run(url: str) -> dict[str, Any]:
        r = redis_client(url)
        info = await r.info("server")
        await r.aclose()
        raw = [await _raw_rates(url, max(events, 50_000)) for _ in range(runs)]
        xadd = statistics.median(x for x, _ in raw)
        xread = statistics.median(y for _, y in raw)
        report: dict[str, Any] = {
            "redis_version": info["redis_version"],
            "events_per_run": events,
            "runs": runs,
            "raw_xadd_per_s": round(xadd),
            "raw_xread_per_s": round(xread),
            "scenarios": {},
        }
        for scenario in SCENARIOS:
            rates = [await _run_scenario(url, scenario, events) for _ in range(runs)]
            median = statistics.median(rates)
            report["scenarios"][scenario] = {
                "events_per_s_median": round(median),
                "runs": [round(x) for x in rates],
                "vs_raw_xread": round(median / xread, 3),
                "vs_raw_xadd": round(median / xadd, 3),
            }
        if compaction_updates:
            report["compaction"] = await bench_compaction(url, compaction_updates)
        if profile_dir is not None:
            path = profile_dir / "forward_table.txt"
            await _run_scenario(url, "forward_table", events * 2, profile=path)
            if path.exists():
                report["profile_forward_table"] = {
                    "file": str(path),
                    "by_package": [(n, round(s, 3)) for n, s in summarize_by_module(path)],
                    "top_functions": [(n, round(s, 3)) for n, s in summarize_profile(path)],
                }
        return report

    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    with _server(redis_url) as url:
        return asyncio.run(run(url))


if __name__ == "__main__":
    make_app().main()
