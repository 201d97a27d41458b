"""Benchmarks of the live pipeline (``livecoach bench analyze|pipeline``).

Each benchmark measures livecoach and, in the same run on the same Redis, a raw
redis-py baseline doing the nearest equivalent with nothing on top, so that a noisy
shared machine shows up in both figures. Every figure printed is measured; runs are
repeated and the median reported.

- ``analyze``: recordings through ``livecoach analyze`` (the live agents on a real
  Redis), as times real time; baseline: XADD and XREAD of the same number of entries.
- ``pipeline``: N sessions at 1 Hz for D seconds through real worker processes (the
  live and the store app): latency from a sample's record entering ``samples`` to
  its ``metrics_update`` on ``live`` (p50/p95/p99), every sample persisted; then the
  highest sustained rate, a backlog of samples processed as fast as the worker can.
  Baseline: a raw XADD to XREAD round trip at the same rate.

The load generator and the baselines run on uvloop, as the workers do: they share the
machine's cores with what they measure, so they should take as little as they can.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psycopg
import redis.asyncio as aioredis
import uvloop

from bench.servers import private_redis, private_servers
from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC
from pipeline.embedded import die_with_parent, free_port, stop_children
from pipeline.gcpolicy import full_collections_deferred
from pipeline.models import OFFLINE_USER_ID
from pipeline.records import session_key
from pipeline.settings import Settings
from pipeline.transport import streams
from pipeline.transport.clients import redis_client

PARTITIONS = 8


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 2),
        "p95": round(float(np.percentile(arr, 95)), 2),
        "p99": round(float(np.percentile(arr, 99)), 2),
        "max": round(float(arr.max()), 2),
    }


# --- raw baselines ---------------------------------------------------------------------


async def raw_roundtrip_ms(redis_url: str, rate_hz: int, duration_s: float) -> list[float]:
    """XADD at ``rate_hz`` while another connection XREADs: the latency of each entry."""
    producer = redis_client(redis_url)
    consumer = redis_client(redis_url)
    key = "bench:raw:roundtrip"
    await producer.delete(key)
    latencies: list[float] = []
    total = int(rate_hz * duration_s)

    async def consume() -> None:
        last = "0-0"
        while len(latencies) < total:
            reply: Any = await consumer.xread({key: last}, count=1000, block=1000)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    latencies.append((time.perf_counter() - float(fields[b"t"])) * 1000)

    task = asyncio.create_task(consume())
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate_hz
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        await producer.xadd(key, {"t": repr(time.perf_counter()), "v": "x" * 200})
    await asyncio.wait_for(task, 30)
    await producer.delete(key)
    await producer.aclose()
    await consumer.aclose()
    return latencies


async def raw_throughput(redis_url: str, entries: int, size: int = 1000) -> dict[str, float]:
    """Entries per second for pipelined XADD and for XREAD of the same entries."""
    client = redis_client(redis_url)
    key = "bench:raw:throughput"
    await client.delete(key)
    payload = "x" * size
    start = time.perf_counter()
    for i in range(0, entries, 500):
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(min(500, entries - i)):
                pipe.xadd(key, {"v": payload})
            await pipe.execute()
    xadd_s = time.perf_counter() - start
    start = time.perf_counter()
    last, read = "0-0", 0
    while read < entries:
        reply: Any = await client.xread({key: last}, count=1000)
        for _, items in reply:
            read += len(items)
            last = items[-1][0]
    xread_s = time.perf_counter() - start
    await client.delete(key)
    await client.aclose()
    return {"xadd_per_s": round(entries / xadd_s), "xread_per_s": round(entries / xread_s)}


# --- analyze -----------------------------------------------------------------------------


def bench_analyze(settings: Settings, files: list[Path], runs: int) -> dict[str, Any]:
    from agents.analyze import run
    from pipeline.recordings import read_recording

    results: dict[str, Any] = {}
    with private_redis() as redis_url:
        for path in files:
            recording = read_recording(path)
            duration = recording.samples[-1].t - recording.samples[0].t
            times, baselines = [], []
            for _ in range(runs):
                started = time.perf_counter()
                summary = run(settings, redis_url, recording.samples)
                times.append(time.perf_counter() - started)
                entries = len(recording.samples)
                base = uvloop.run(raw_throughput(redis_url, entries, size=200))
                baselines.append(entries / base["xadd_per_s"] + entries / base["xread_per_s"])
            median = statistics.median(times)
            results[path.name] = {
                "samples": len(recording.samples),
                "duration_s": round(duration),
                "analysis_s_runs": [round(t, 3) for t in times],
                "analysis_s_median": round(median, 3),
                "times_real_time": round(duration / median),
                "raw_xadd_xread_s_median": round(statistics.median(baselines), 4),
                "np": summary["np"],
            }
    return results


# --- the live pipeline ---------------------------------------------------------------------


class _Workers:
    def __init__(self, redis_url: str, database_url: str, *, alerts: bool = True) -> None:
        self.env = {
            "LIVECOACH_ALERTS_ENABLED": "true" if alerts else "false",
            **os.environ,
            "LIVECOACH_REDIS_URL": redis_url,
            "LIVECOACH_DATABASE_URL": database_url,
            "LIVECOACH_SAMPLES_PARTITIONS": str(PARTITIONS),
            "LIVECOACH_LIVE_PARTITIONS": str(PARTITIONS),
            "LIVECOACH_LOG_LEVEL": "WARNING",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        #: Each app's web port (its /metrics).
        self.ports: dict[str, int] = {}

    def __enter__(self) -> _Workers:
        for app in ("live", "store"):
            self.ports[app] = free_port()
            port = str(self.ports[app])  # each app reads its own variable
            env = {**self.env, "LIVECOACH_WORKER_WEB_PORT": port, "LIVECOACH_STORE_WEB_PORT": port}
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker", "--app", app], env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent(signal.SIGTERM),
            ))  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        stop_children(self.procs)


#: The bench's athlete, owner of every bench session.
_BENCH_USER = str(OFFLINE_USER_ID)


def _sessions(database_url: str, n: int) -> list[str]:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO users (id, name) VALUES (%s, 'bench') ON CONFLICT DO NOTHING",
            (OFFLINE_USER_ID,),
        )
        rows = conn.execute(
            "INSERT INTO live_training_sessions (user_id) SELECT %s FROM generate_series(1, %s)"
            " RETURNING id",
            (OFFLINE_USER_ID, n),
        ).fetchall()
        return [str(r[0]) for r in rows]


def _redis_version(redis_url: str) -> str:
    import redis

    with redis.Redis.from_url(redis_url) as client:
        return str(client.info("server")["redis_version"])


def _stored_rows(database_url: str, sessions: list[str]) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM live_metrics WHERE live_session_id = ANY(%s::uuid[])",
            (sessions,),
        ).fetchone()
        return int(row[0]) if row else 0


def _last_row_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM live_metrics").fetchone()
    return int(row[0]) if row else 0


def _rows_after(conn: psycopg.Connection[Any], row_id: int) -> int:
    """Rows stored with an id over ``row_id``: a scan of the primary key's new entries.

    The backlog's wait polls this ten times a second on the cores the workers use: a
    count of every row of the sessions cost 57-110 ms a poll (2026-12-07), a tenth of a
    core or more taken from the store worker it measures.
    """
    row = conn.execute("SELECT count(*) FROM live_metrics WHERE id > %s", (row_id,)).fetchone()
    return int(row[0]) if row else 0


def _record(sid: str, t: float, samples_per_record: int = 1) -> bytes:
    n = int(sid[-4:], 16)  # a number per session, to vary the values between sessions
    samples = [
        {"session_id": sid, "t": t + k, "heart_rate": 140.0 + (n + k) % 30,
         "power_w": 200.0 + (n * 7 + k) % 80, "cadence": 88.0}
        for k in range(samples_per_record)
    ]  # fmt: skip
    # What SampleBatchRecord.model_dump_json() writes, without pydantic's cost in the load
    # generator (it shares the two cores with the workers it measures).
    record = {"kind": "samples", "session_id": sid, "user_id": _BENCH_USER,
              "ingest_ms": int(time.time() * 1000), "samples": samples}  # fmt: skip
    return orjson.dumps(record)


async def _append_many(client: aioredis.Redis, records: list[tuple[str, bytes]]) -> None:
    """Append records to their partitions in one pipeline, as the edge's producer does."""
    by_partition: dict[int, list[streams.Entry]] = {}
    now_ms = int(time.time() * 1000)
    for sid, value in records:
        key = session_key(sid)
        by_partition.setdefault(streams.partition_for_key(key, PARTITIONS), []).append(
            (key, value, None, now_ms)
        )
    server = await streams.prepare(client)
    retention = await streams.cached_retention(client, SAMPLES_TOPIC)
    maxlen = retention.maxlen if retention else None
    batches = [
        streams.Batch(SAMPLES_TOPIC, partition, entries, maxlen)
        for partition, entries in by_partition.items()
    ]
    async with client.pipeline(transaction=False) as pipe:
        for _, command in streams.append_calls(server, batches):
            pipe.execute_command(*command)
        await pipe.execute()


async def _until_processing(redis_url: str, probe: str, timeout_s: float = 120.0) -> float:
    """Post samples of a probe session until its metrics come out of the live worker.

    The clock must not start before the workers joined their group, took their
    partitions and recovered their tables: a fixed wait either wastes time or, on a
    loaded host, measures start-up instead. Returns the seconds it took.
    """
    client = redis_client(redis_url)
    partition = streams.partition_for_key(session_key(probe), PARTITIONS)
    position = await streams.highwater(client, LIVE_TOPIC, partition) - 1
    started = time.monotonic()
    t0 = time.time()
    try:
        for n in range(int(timeout_s * 2)):
            await _append_many(client, [(probe, _record(probe, t0 + n))])
            reply: Any = await client.xread(
                {streams.stream_key(LIVE_TOPIC, partition): streams.stream_id(position)},
                count=100, block=500,
            )  # fmt: skip
            for _key, entries in reply or []:
                for entry_id, fields in entries:
                    position = streams.offset_of(entry_id)
                    event = orjson.loads(streams.decode_entry(fields)[1] or b"{}")
                    if event.get("type") == "metrics_update" and event.get("session_id") == probe:
                        return time.monotonic() - started
        raise RuntimeError(f"the live worker processed nothing in {timeout_s:.0f} s")
    finally:
        await client.aclose()


async def _tail_live(
    client: aioredis.Redis, stop: asyncio.Event, latencies: list[float], counts: list[int]
) -> None:
    positions = {p: await streams.highwater(client, LIVE_TOPIC, p) - 1 for p in range(PARTITIONS)}
    while not stop.is_set():
        reply: Any = await client.xread(
            {streams.stream_key(LIVE_TOPIC, p): streams.stream_id(o) for p, o in positions.items()},
            count=5000,
            block=200,
        )
        now_ms = time.time() * 1000
        for key, entries in reply or []:
            partition = next(
                p for p in positions if streams.stream_key(LIVE_TOPIC, p).encode() == key
            )
            for entry_id, fields in entries:
                positions[partition] = streams.offset_of(entry_id)
                event = orjson.loads(streams.decode_entry(fields)[1] or b"{}")
                if event.get("type") == "metrics_update":
                    counts[0] += 1
                    latencies.append(now_ms - event["ingest_ms"])


async def _live_load(
    redis_url: str, sessions: list[str], duration_s: float
) -> tuple[list[float], int, int]:
    """Every session posts one sample a second, spread evenly over the second."""
    client = redis_client(redis_url)
    tail_client = redis_client(redis_url)
    latencies: list[float] = []
    counts = [0]
    stop = asyncio.Event()
    tail = asyncio.create_task(_tail_live(tail_client, stop, latencies, counts))
    await asyncio.sleep(0.5)
    t0 = time.time()
    sent = 0
    tick_s = 0.01
    n = len(sessions)
    start = time.perf_counter()
    for second in range(int(duration_s)):
        for tick in range(int(1 / tick_s)):
            due = start + second + tick * tick_s
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            lo, hi = tick * n * tick_s, (tick + 1) * n * tick_s
            batch = [(sid, _record(sid, t0 + second)) for sid in sessions[int(lo) : int(hi)]]
            if batch:
                await _append_many(client, batch)
                sent += len(batch)
    deadline = time.monotonic() + 30
    while counts[0] < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stop.set()
    await tail
    await client.aclose()
    await tail_client.aclose()
    return latencies, sent, counts[0]


async def _backlog(
    redis_url: str, database_url: str, sessions: list[str], per_session: int, per_record: int
) -> tuple[float, float]:
    """Append a backlog; samples per second through the live app, and through both apps."""
    client = redis_client(redis_url)
    t0 = time.time() + 100_000
    records = []
    for k in range(0, per_session, per_record):
        # The last record of a session may be short: exactly per_session samples each
        # (a backlog of 1 was counted as 1 sample a session while 10 were sent).
        n = min(per_record, per_session - k)
        records += [(sid, _record(sid, t0 + k, n)) for sid in sessions]
    samples = len(sessions) * per_session
    rows_target = 3 * samples  # HR, power, cadence per sample
    # The live load's rows are all stored (or the run says they are not), so every row
    # with a higher id than the last one now is the backlog's.
    with psycopg.connect(database_url, autocommit=True) as poll:
        before = _last_row_id(poll)
        highwaters = {p: await streams.highwater(client, LIVE_TOPIC, p) for p in range(PARTITIONS)}
        start = time.perf_counter()
        for i in range(0, len(records), 2000):
            await _append_many(client, records[i : i + 2000])
        # One metrics_update per record (the state after its last sample): wait for all.
        while time.perf_counter() - start < 300:
            produced = 0
            for p in range(PARTITIONS):
                produced += await streams.highwater(client, LIVE_TOPIC, p) - highwaters[p]
            if produced >= len(records):
                break
            await asyncio.sleep(0.05)
        live_s = time.perf_counter() - start
        while _rows_after(poll, before) < rows_target and time.perf_counter() - start < 300:
            await asyncio.sleep(0.1)
        all_s = time.perf_counter() - start
    await client.aclose()
    return samples / live_s, samples / all_s


def _one_run(
    redis_url: str, database_url: str, sessions: int, duration_s: float, backlog: int, alerts: bool
) -> dict[str, Any]:
    *ids, probe = _sessions(database_url, sessions + 1)
    rows_before = _stored_rows(database_url, ids)
    with _Workers(redis_url, database_url, alerts=alerts):
        uvloop.run(_until_processing(redis_url, probe))
        with full_collections_deferred():  # the measuring client's pauses are not ours
            latencies, sent, received = uvloop.run(_live_load(redis_url, ids, duration_s))
        expected_rows = rows_before + sent * 3
        deadline = time.monotonic() + 120
        while _stored_rows(database_url, ids) < expected_rows and time.monotonic() < deadline:
            time.sleep(0.5)
        stored = _stored_rows(database_url, ids)
        rates = (0.0, 0.0)
        if backlog:
            rates = uvloop.run(
                _backlog(redis_url, database_url, ids[: min(1000, len(ids))], backlog, 10)
            )
    return {
        "alerts": alerts,
        "latency_ms": _percentiles(latencies),
        "samples_sent": sent,
        "metrics_updates": received,
        "rows_expected": expected_rows - rows_before,
        "rows_stored": stored - rows_before,
        "sustained_samples_per_s": round(rates[0]),
        "sustained_samples_per_s_persisted": round(rates[1]),
    }


def bench_pipeline(
    settings: Settings,
    *,
    sessions: int,
    duration_s: float,
    runs: int,
    backlog: int,
    compare_alerts: bool = False,
) -> dict[str, Any]:
    """``runs`` runs on fresh servers; with ``compare_alerts`` each run also measures the
    same load with the alert rules off, so the alert path's cost comes from one run."""
    out: dict[str, Any] = {"sessions": sessions, "duration_s": duration_s, "runs": []}
    for _ in range(runs):
        with private_servers() as (redis_url, database_url):
            run: dict[str, Any] = {
                "alerts_on": _one_run(redis_url, database_url, sessions, duration_s, backlog, True)
            }
            with full_collections_deferred():
                raw = uvloop.run(raw_roundtrip_ms(redis_url, sessions, min(duration_s, 20)))
            run["raw_xadd_xread_latency_ms"] = _percentiles(raw)
            out["redis_version"] = _redis_version(redis_url)
        if compare_alerts:
            # Fresh servers, so that neither phase inherits the other's backlog.
            with private_servers() as (redis_url, database_url):
                run["alerts_off"] = _one_run(
                    redis_url, database_url, sessions, duration_s, 0, False
                )
        out["runs"].append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    on = [r["alerts_on"] for r in out["runs"]]
    out["median"] = {
        "latency_p99_ms": statistics.median(r["latency_ms"]["p99"] for r in on),
        "latency_p95_ms": statistics.median(r["latency_ms"]["p95"] for r in on),
        "raw_latency_p99_ms": statistics.median(
            r["raw_xadd_xread_latency_ms"]["p99"] for r in out["runs"]
        ),
        "sustained_samples_per_s": statistics.median(r["sustained_samples_per_s"] for r in on),
        "sustained_samples_per_s_persisted": statistics.median(
            r["sustained_samples_per_s_persisted"] for r in on
        ),
        "all_rows_stored": all(r["rows_stored"] == r["rows_expected"] for r in on),
    }
    if compare_alerts:
        off = [r["alerts_off"] for r in out["runs"]]
        out["median"]["latency_p99_ms_alerts_off"] = statistics.median(
            r["latency_ms"]["p99"] for r in off
        )
        out["median"]["alert_path_p99_ms"] = statistics.median(
            r["alerts_on"]["latency_ms"]["p99"] - r["alerts_off"]["latency_ms"]["p99"]
            for r in out["runs"]
        )
    return out
