"""``livecoach analyze``: run a recording through the live agents and summarise it.

The recording goes through exactly what a live session goes through: a start record,
the samples in batches, a stop record, appended to a ``samples`` topic on a real Redis
and consumed by the live Faust app (:func:`agents.app.create_live_app`) running in
this process. The summary is the one the agent publishes with the stop event, and the
alerts are those it published on the way, so the analyst sees the numbers the live
path computed.

It is a replay (:mod:`agents.replay`) of one session built from the recording: it
runs in topics and an application id of its own and deletes them afterwards, so it
can share a Redis with a running system.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agents.replay import Recorded, ReplayError, replay
from pipeline.models import OFFLINE_SESSION_ID, OFFLINE_USER_ID, AthleteProfile, Sample
from pipeline.records import ControlRecord, SampleBatchRecord
from pipeline.settings import Settings

SESSION_ID = OFFLINE_SESSION_ID
USER_ID = OFFLINE_USER_ID


#: The error of a run that did not finish (kept under its old name).
AnalysisError = ReplayError


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
    started = time.perf_counter()
    records = recording_records(samples, profile=profile, alerts=alerts, lap_mode=lap_mode)
    session = Recorded(str(SESSION_ID), str(USER_ID), records, source="file")
    result = (await replay(settings, redis_url, [session], timeout_s=timeout_s))[str(SESSION_ID)]
    if result.summary is None:
        raise AnalysisError(f"the agents produced no summary within {timeout_s:.0f} s")
    summary = result.summary
    summary["alerts"] = result.alerts
    summary["analysis_s"] = round(time.perf_counter() - started, 3)
    return summary


def recording_records(
    samples: list[Sample],
    *,
    profile: AthleteProfile | None = None,
    alerts: dict[str, Any] | None = None,
    lap_mode: str = "distance",
) -> list[dict[str, Any]]:
    """The ``samples`` topic records of a recording: start, the samples, stop."""
    now_ms = int(time.time() * 1000)
    t0_ms = round(samples[0].t * 1000) if samples else now_ms
    t_end_ms = round(samples[-1].t * 1000) + 1000 if samples else now_ms
    payload: dict[str, Any] = {"lap_mode": lap_mode}
    if profile is not None:
        payload["profile"] = profile.model_dump()
    if alerts is not None:
        payload["alerts"] = alerts
    start = ControlRecord(session_id=SESSION_ID, user_id=USER_ID, ingest_ms=now_ms,
                          action="start", at_ms=t0_ms, payload=payload)  # fmt: skip
    batch = SampleBatchRecord(
        session_id=SESSION_ID, user_id=USER_ID, ingest_ms=now_ms,
        samples=[s.model_dump(exclude_none=True) | {"session_id": str(SESSION_ID)}
                 for s in samples],
    )  # fmt: skip
    stop = ControlRecord(session_id=SESSION_ID, user_id=USER_ID, ingest_ms=now_ms,
                         action="stop", at_ms=t_end_ms)  # fmt: skip
    return [r.model_dump(mode="json") for r in (start, batch, stop)]


def run(settings: Settings, redis_url: str, samples: list[Sample], **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(analyze(settings, redis_url, samples, **kwargs))
