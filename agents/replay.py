"""``livecoach replay``: recorded sessions back through the live agents, in isolation.

A replay runs the records of one or more sessions (start, samples, laps, pauses,
profile edits, stop: what the ``samples`` topic carried live, or what
:mod:`agents.replay_sources` rebuilds from PostgreSQL) through the live Faust app
(:func:`agents.app.create_live_app`) running in this process, and collects the alerts
and the summary it publishes. ``livecoach analyze`` is a replay of one recording.

Isolation: each run has its own topic prefix (``replay-<run>.``) and application id,
and only the live app runs (never the store app), so nothing reaches a production
topic, consumer group, table or socket; every key of the run is deleted afterwards.
The sessions keep their ids, so the alerts' deterministic ids
(:func:`agents.alerts.rules.alert_id`) are those raised live.

A what-if (:class:`Override`) changes the profile or the alert settings that the
start record (and every later profile edit) carries; :mod:`agents.replay_diff`
compares the alerts as recorded with the alerts as replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from agents.app import create_live_app
from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC
from pipeline.errors import LivecoachError
from pipeline.records import session_key
from pipeline.settings import Settings
from pipeline.transport import streams
from pipeline.transport.clients import redis_client

#: Samples per stream entry at full speed: fewer, larger events divide Faust's
#: per-event cost (the agents' results do not depend on how samples are batched).
BATCH_SAMPLES = 500
#: Consumer-group session of a run's single member (the transport's default is 10 s).
REPLAY_SESSION_TIMEOUT_S = 3.0
#: Prefix of every topic and application id of a replay run (deleted afterwards).
RUN_PREFIX = "replay-"

Record = dict[str, Any]


class ReplayError(LivecoachError):
    """A replay could not run or the agents did not finish in time."""


@dataclass
class Override:
    """What-if settings: profile fields over the recorded profile, and alert settings
    (``AlertConfig`` JSON, as ``PUT thresholds`` takes) merged key by key over the
    recorded ones, so ``{"rules": {"heart_rate": {"high_bpm": 150}}}`` changes only
    that bound and keeps the athlete's dwell, window and other rules."""

    profile: dict[str, Any] = field(default_factory=dict)
    alerts: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.profile) or self.alerts is not None

    def apply(self, record: Record) -> Record:
        """``record`` with the override in its payload (start and profile records)."""
        if record.get("kind") != "control" or record.get("action") not in ("start", "profile"):
            return record
        payload = dict(record.get("payload") or {})
        if self.profile:
            base = payload.get("profile")
            payload["profile"] = {**(base if isinstance(base, dict) else {}), **self.profile}
        if self.alerts is not None:
            recorded = payload.get("alerts")
            if not isinstance(recorded, dict):
                row = payload.get("profile")
                found = row.get("alert_settings") if isinstance(row, dict) else None
                recorded = found if isinstance(found, dict) else {}
            payload["alerts"] = _merged(recorded, self.alerts)
        return {**record, "payload": payload}


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        out[key] = (
            _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


@dataclass
class Recorded:
    """One session as recorded: the records to replay, and what the live path made of
    them (``None`` when unknown, e.g. a session still running)."""

    session_id: str
    user_id: str
    records: list[Record]
    alerts: list[dict[str, Any]] | None = None
    summary: dict[str, Any] | None = None
    source: str = ""


@dataclass
class Replayed:
    summary: dict[str, Any] | None
    alerts: list[dict[str, Any]]


def record_time_s(record: Record) -> float:
    """When a record happened: a control's ``at_ms``, a batch's first sample."""
    if record.get("kind") == "control":
        return int(record.get("at_ms", 0)) / 1000.0
    samples = record.get("samples") or [{}]
    return float(samples[0].get("t", 0.0))


def _batched(records: list[Record]) -> list[Record]:
    """Consecutive sample batches of a session merged into batches of BATCH_SAMPLES."""
    out: list[Record] = []
    pending: list[dict[str, Any]] = []
    head: Record | None = None

    def flush() -> None:
        nonlocal pending, head
        for i in range(0, len(pending), BATCH_SAMPLES):
            assert head is not None
            out.append({**head, "samples": pending[i : i + BATCH_SAMPLES]})
        pending, head = [], None

    for record in records:
        if record.get("kind") == "samples":
            head = head or record
            pending.extend(record.get("samples", []))
        else:
            flush()
            out.append(record)
    flush()
    return out


async def replay(
    settings: Settings,
    redis_url: str,
    sessions: list[Recorded],
    *,
    override: Override | None = None,
    speed: float | None = None,
    timeout_s: float = 300.0,
    timings: dict[str, float] | None = None,
    after: Callable[[aioredis.Redis, str], Awaitable[None]] | None = None,
) -> dict[str, Replayed]:
    """Each session's summary and alerts as the live agents compute them now.

    ``speed`` None: as fast as the agents go; N: N x real time (records paced by
    their own times, all sessions on one clock, so a dashboard can follow).
    ``timings`` (when given) receives the seconds spent starting the app, running the
    records through it, and stopping and cleaning up. ``after`` (when given) runs once
    every session stopped, before the run is cleaned up, with the Redis client and the
    run's topic prefix (a group replay finishes its group there).
    """
    if speed is not None and speed <= 0:
        raise ReplayError(f"speed must be positive, got {speed}")
    run = uuid.uuid4().hex[:10]
    prefix = f"{RUN_PREFIX}{run}."
    app_id = f"livecoach-{RUN_PREFIX}{run}"
    one_partition = settings.model_copy(update={"samples_partitions": 1, "live_partitions": 1})
    app = create_live_app(
        one_partition, redis_url=redis_url, app_id=app_id, web_enabled=False, topic_prefix=prefix
    )
    # The run's consumer group is new and has one member: a short session lets it settle
    # (two heartbeat intervals, a third of a session each) in 1 s instead of 3.3 s.
    app.conf.broker_session_timeout = REPLAY_SESSION_TIMEOUT_S
    client = redis_client(redis_url)
    override = override or Override()
    plans = [[override.apply(r) for r in s.records] for s in sessions]
    wanted = {s.session_id for s in sessions}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        if timings is not None:
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - clock, 4)
        clock = time.perf_counter()

    try:
        await app.start()
        collector = asyncio.ensure_future(_collect(client, prefix, wanted, timeout_s))
        lap("app_start_s")
        try:
            if speed is None:
                await _produce_all(client, prefix, [_batched(p) for p in plans])
            else:
                await _produce_paced(client, prefix, plans, speed)
            results = await collector
            if after is not None:
                await after(client, prefix)
            lap("run_s")
            return results
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError, ReplayError):
                await collector
    finally:
        with contextlib.suppress(Exception):
            await app.stop()
        await cleanup(client, prefix, app_id)
        await client.aclose()
        lap("app_stop_s")


def _entry(record: Record, now_ms: int) -> streams.Entry:
    return (session_key(str(record["session_id"])), json.dumps(record).encode(), None, now_ms)


async def _produce_all(client: aioredis.Redis, prefix: str, plans: list[list[Record]]) -> None:
    now_ms = int(time.time() * 1000)
    entries = [_entry(r, now_ms) for plan in plans for r in plan]
    for i in range(0, len(entries), 1000):
        await streams.append(client, prefix + SAMPLES_TOPIC, 0, entries[i : i + 1000])


async def _produce_paced(
    client: aioredis.Redis, prefix: str, plans: list[list[Record]], speed: float
) -> None:
    """Records at ``speed`` x the pace they were recorded at; a batch's samples one by
    one, so a dashboard sees them arrive as a device would send them."""
    timeline: list[tuple[float, int, Record]] = []
    for plan in plans:
        # A session's records keep their order (a start stamped a millisecond after its
        # first sample still comes first): each is due no earlier than the one before.
        due = float("-inf")
        for record in plan:
            if record.get("kind") == "samples" and len(record.get("samples", [])) > 1:
                parts = [{**record, "samples": [sample]} for sample in record["samples"]]
            else:
                parts = [record]
            for part in parts:
                due = max(due, record_time_s(part))
                timeline.append((due, len(timeline), part))
    timeline.sort(key=lambda item: (item[0], item[1]))
    if not timeline:
        return
    t0 = timeline[0][0]
    started = time.monotonic()
    for t, _, record in timeline:
        delay = (t - t0) / speed - (time.monotonic() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        await streams.append(client, prefix + SAMPLES_TOPIC, 0, [_entry(record, _now_ms())])


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _collect(
    client: aioredis.Redis, prefix: str, wanted: set[str], timeout_s: float
) -> dict[str, Replayed]:
    """Read the run's live topic until every session's stop event."""
    deadline = time.monotonic() + timeout_s
    offset = 0
    results = {sid: Replayed(None, []) for sid in wanted}
    seen: set[str] = set()
    pending = set(wanted)
    while pending:
        if time.monotonic() > deadline:
            raise ReplayError(
                f"the agents did not finish {len(pending)} session(s) within {timeout_s:.0f} s"
            )
        entries = await streams.read(
            client, prefix + LIVE_TOPIC, 0, offset, count=10_000, block_ms=200
        )
        for entry_offset, (_, value, _, _) in entries:
            offset = entry_offset
            if value is None:
                continue
            event = json.loads(value)
            sid = str(event.get("session_id"))
            if sid not in results:
                continue
            if event.get("type") == "alert" and event["alert"]["id"] not in seen:
                seen.add(event["alert"]["id"])
                results[sid].alerts.append(event["alert"])
            elif event.get("type") == "session_event" and event.get("event") == "stop":
                results[sid].summary = dict(event["summary"])
                pending.discard(sid)
    return results


async def cleanup(client: aioredis.Redis, prefix: str, app_id: str) -> None:
    """Delete every key of a run (its topics, changelogs, offsets, membership)."""
    for pattern in (f"*{prefix}*", f"*{app_id}*"):
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
