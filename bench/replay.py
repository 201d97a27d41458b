"""``livecoach bench replay``: how fast a recorded session replays, beside ``analyze``.

A one-hour session (1 Hz, an interval workout) is stored as the live path stores it:
its samples in ``live_metrics`` (private PostgreSQL), its records on the ``samples``
topic (private Redis, one sample per record as a device at 1 Hz sends them). Each
run times, end to end, on the same servers and samples:

- ``analyze``: the samples through the agents, as ``livecoach bench analyze`` does
  (the baseline: the same agents without loading anything);
- ``replay database``: load from PostgreSQL, then replay;
- ``replay stream``: read the ``samples`` topic, then replay.

Reported: every run, the medians, and ``times_real_time`` = 3,600 s / median; for the
replays also the median of each phase (loading from the source, starting the Faust
app, running the records through it until the last stop event, stopping the app and
deleting the run's keys).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import statistics
import time
import uuid
from typing import Any

import psycopg

from agents.analyze import analyze
from agents.replay_report import run_report
from agents.replay_sources import Selection
from bench.servers import private_servers
from pipeline.constants import SAMPLES_TOPIC
from pipeline.db import finish_session, insert_metric_rows, metric_rows
from pipeline.models import Sample
from pipeline.records import ControlRecord, SampleBatchRecord, session_key
from pipeline.settings import Settings
from pipeline.transport import streams
from pipeline.transport.clients import redis_client

DURATION_S = 3600


def interval_session(session_id: uuid.UUID, t0: float) -> list[Sample]:
    """One hour at 1 Hz: warm-up, 6 x (3 min hard, 3 min easy), cool-down."""
    out = []
    for i in range(DURATION_S):
        hard = 900 <= i < 900 + 6 * 360 and (i - 900) % 360 < 180
        power = (300.0 if hard else 160.0) + 15 * math.sin(i / 7)
        hr = 120 + 45 * (1 - math.exp(-(i % 360) / 60)) if hard else 130 + 5 * math.sin(i / 50)
        out.append(Sample(session_id=session_id, t=t0 + i, heart_rate=round(hr, 1),
                          power_w=round(power, 1), speed_m_s=9.0 if hard else 7.5,
                          cadence=90.0, distance_m=8.0 * i))  # fmt: skip
    return out


async def _store(
    redis_url: str, database_url: str, settings: Settings, samples: list[Sample]
) -> tuple[str, str]:
    """The session stored as the live path would have: PostgreSQL rows and topic records."""
    sid, uid = str(samples[0].session_id), str(uuid.uuid4())
    t0, t_end = samples[0].t, samples[-1].t + 1
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO users (id, name) VALUES (%s, 'bench')", (uid,))
        await conn.execute(
            "INSERT INTO live_training_sessions (id, user_id, status, started_at)"
            " VALUES (%s, %s, 'completed', to_timestamp(%s))",
            (sid, uid, t0),
        )
        rows = [row for s in samples for row in metric_rows(sid, s.t, s.model_dump())]
        await insert_metric_rows(conn, rows)
        start = dt.datetime.fromtimestamp(t0, dt.UTC)
        end = dt.datetime.fromtimestamp(t_end, dt.UTC)
        await finish_session(conn, sid, sport="ride", started_at=start, ended_at=end, summary={})
    client = redis_client(redis_url)
    try:
        partitions = await streams.declare_topic(client, SAMPLES_TOPIC, settings.samples_partitions)
        key = session_key(sid)
        now_ms = int(time.time() * 1000)
        records: list[ControlRecord | SampleBatchRecord] = [
            ControlRecord(session_id=sid, user_id=uid, ingest_ms=now_ms, action="start",
                          at_ms=round(t0 * 1000))
        ]  # fmt: skip
        records += [
            SampleBatchRecord(session_id=sid, user_id=uid, ingest_ms=now_ms,
                              samples=[s.model_dump(mode="json", exclude_none=True)])
            for s in samples
        ]  # fmt: skip
        records.append(ControlRecord(session_id=sid, user_id=uid, ingest_ms=now_ms,
                                     action="stop", at_ms=round(t_end * 1000)))  # fmt: skip
        entries = [(key, r.model_dump_json().encode(), None, now_ms) for r in records]
        partition = streams.partition_for_key(key, partitions)
        for i in range(0, len(entries), 1000):
            await streams.append(client, SAMPLES_TOPIC, partition, entries[i : i + 1000])
    finally:
        await client.aclose()
    return sid, uid


def bench_replay(settings: Settings, runs: int) -> dict[str, Any]:
    samples = interval_session(uuid.uuid4(), time.time() - 2 * DURATION_S)
    times: dict[str, list[float]] = {"analyze": [], "replay_database": [], "replay_stream": []}
    phases: dict[str, dict[str, list[float]]] = {"replay_database": {}, "replay_stream": {}}
    summaries: dict[str, Any] = {}
    with private_servers() as (redis_url, database_url):
        sid, _ = asyncio.run(_store(redis_url, database_url, settings, samples))
        selection = Selection(session_id=uuid.UUID(sid))
        for _ in range(runs):
            started = time.perf_counter()
            summaries["analyze"] = asyncio.run(analyze(settings, redis_url, samples))
            times["analyze"].append(time.perf_counter() - started)
            for source in ("database", "stream"):
                started = time.perf_counter()
                report = asyncio.run(run_report(
                    settings, redis_url, source=source, selection=selection,
                    database_url=database_url,
                ))  # fmt: skip
                times[f"replay_{source}"].append(time.perf_counter() - started)
                phases[f"replay_{source}"].setdefault("load_s", []).append(report["load_s"])
                for phase, seconds in report["timings"].items():
                    phases[f"replay_{source}"].setdefault(phase, []).append(seconds)
                summaries[source] = report["sessions"][0]["replayed"]["summary"]
    out: dict[str, Any] = {"session_s": DURATION_S, "samples": len(samples), "runs": runs}
    for name, values in times.items():
        median = statistics.median(values)
        out[name] = {
            "s_runs": [round(v, 3) for v in values],
            "s_median": round(median, 3),
            "times_real_time": round(DURATION_S / median),
        }
        for phase, values in phases.get(name, {}).items():
            out[name][f"{phase}_median"] = round(statistics.median(values), 3)
    out["np"] = {name: summaries[name]["np"] for name in summaries}
    return out
