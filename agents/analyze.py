"""``livecoach analyze``: run a recording through the live agents and summarise it.

The recording goes through exactly what a live session goes through: a start record,
the samples in batches, a stop record, appended to a ``samples`` topic on a real Redis
and consumed by the live Faust app (:func:`agents.app.create_live_app`) running in
this process. The summary is the one the agent publishes with the stop event, and the
alerts are those it published on the way, so the analyst sees the numbers the live
path computed.

Each run uses topics and an application id of its own (``analyze-<run>.``) and
deletes them afterwards, so it can share a Redis with a running system.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from agents.app import create_live_app
from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC
from pipeline.errors import LivecoachError
from pipeline.models import OFFLINE_SESSION_ID, OFFLINE_USER_ID, AthleteProfile, Sample
from pipeline.records import ControlRecord, SampleBatchRecord, session_key
from pipeline.settings import Settings
from pipeline.transport import streams
from pipeline.transport.clients import redis_client

#: Samples per stream entry: fewer, larger events divide Faust's per-event cost.
BATCH_SAMPLES = 500
SESSION_ID = OFFLINE_SESSION_ID
USER_ID = OFFLINE_USER_ID


class AnalysisError(LivecoachError):
    """The agents did not produce a summary in time."""


async def analyze(
    settings: Settings,
    redis_url: str,
    samples: list[Sample],
    *,
    profile: AthleteProfile | None = None,
    alerts: dict[str, Any] | None = None,
    lap_mode: str = "distance",
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """The summary of ``samples`` (oldest first) as the live agents compute it."""
    run = uuid.uuid4().hex[:10]
    prefix = f"analyze-{run}."
    app_id = f"livecoach-analyze-{run}"
    one_partition = settings.model_copy(update={"samples_partitions": 1, "live_partitions": 1})
    app = create_live_app(
        one_partition, redis_url=redis_url, app_id=app_id, web_enabled=False, topic_prefix=prefix
    )
    client = redis_client(redis_url)
    started = time.perf_counter()
    try:
        await app.start()
        await _produce(client, prefix, samples, profile, alerts, lap_mode)
        summary, raised = await _collect(client, prefix, timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await app.stop()
        await _cleanup(client, prefix, app_id)
        await client.aclose()
    summary["alerts"] = raised
    summary["analysis_s"] = round(time.perf_counter() - started, 3)
    return summary


async def _produce(
    client: aioredis.Redis,
    prefix: str,
    samples: list[Sample],
    profile: AthleteProfile | None,
    alerts: dict[str, Any] | None,
    lap_mode: str,
) -> None:
    key = session_key(SESSION_ID)
    now_ms = int(time.time() * 1000)
    t0_ms = round(samples[0].t * 1000) if samples else now_ms
    t_end_ms = round(samples[-1].t * 1000) + 1000 if samples else now_ms
    payload: dict[str, Any] = {"lap_mode": lap_mode}
    if profile is not None:
        payload["profile"] = profile.model_dump()
    if alerts is not None:
        payload["alerts"] = alerts
    records: list[ControlRecord | SampleBatchRecord] = [
        ControlRecord(session_id=SESSION_ID, user_id=USER_ID, ingest_ms=now_ms, action="start",
                      at_ms=t0_ms, payload=payload)
    ]  # fmt: skip
    for i in range(0, len(samples), BATCH_SAMPLES):
        batch = [
            s.model_dump(exclude_none=True) | {"session_id": SESSION_ID}
            for s in samples[i : i + BATCH_SAMPLES]
        ]
        records.append(
            SampleBatchRecord(session_id=SESSION_ID, user_id=USER_ID, ingest_ms=now_ms,
                              samples=batch)
        )  # fmt: skip
    records.append(
        ControlRecord(session_id=SESSION_ID, user_id=USER_ID, ingest_ms=now_ms, action="stop",
                      at_ms=t_end_ms)
    )  # fmt: skip
    entries = [(key, r.model_dump_json().encode(), None, now_ms) for r in records]
    await streams.append(client, prefix + SAMPLES_TOPIC, 0, entries)


async def _collect(
    client: aioredis.Redis, prefix: str, timeout_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read the live topic until the stop event; return its summary and the alerts."""
    deadline = time.monotonic() + timeout_s
    offset = 0
    raised: list[dict[str, Any]] = []
    seen_alerts: set[str] = set()
    while time.monotonic() < deadline:
        entries = await streams.read(
            client, prefix + LIVE_TOPIC, 0, offset, count=10_000, block_ms=200
        )
        for entry_offset, (_, value, _, _) in entries:
            offset = entry_offset
            if value is None:  # a tombstone (none in live)
                continue
            event = json.loads(value)
            if event.get("type") == "alert" and event["alert"]["id"] not in seen_alerts:
                seen_alerts.add(event["alert"]["id"])
                raised.append(event["alert"])
            elif event.get("type") == "session_event" and event.get("event") == "stop":
                return dict(event["summary"]), raised
    raise AnalysisError(f"the agents produced no summary within {timeout_s:.0f} s")


async def _cleanup(client: aioredis.Redis, prefix: str, app_id: str) -> None:
    """Delete every key of this run (its topics, changelogs, offsets, membership)."""
    for pattern in (f"*{prefix}*", f"*{app_id}*"):
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)


def run(settings: Settings, redis_url: str, samples: list[Sample], **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(analyze(settings, redis_url, samples, **kwargs))
