"""One replay from its source to its report (what ``livecoach replay`` prints).

The report lists, per session, the summary and alerts as recorded and as replayed,
the alert comparison (:mod:`agents.replay_diff`) and the summary fields that differ.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from agents.replay import Override, Record, ReplayError, replay
from agents.replay_diff import compare, summary_changes
from agents.replay_sources import Selection, from_database, from_stream
from pipeline.settings import Settings
from pipeline.transport.clients import redis_client

Source = Literal["database", "stream"]


async def run_report(
    settings: Settings,
    redis_url: str,
    *,
    source: Source,
    selection: Selection,
    database_url: str | None = None,
    from_offset: int | None = None,
    override: Override | None = None,
    speed: float | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    loaded_at = time.perf_counter()
    if source == "database":
        if database_url is None:
            raise ReplayError("replaying from the database needs LIVECOACH_DATABASE_URL")
        sessions = await from_database(database_url, selection)
    else:
        client = redis_client(redis_url)
        try:
            sessions = await from_stream(
                client, selection, from_offset=from_offset, database_url=database_url
            )
        finally:
            await client.aclose()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    results = await replay(
        settings, redis_url, sessions, override=override, speed=speed, timeout_s=timeout_s,
        timings=timings,
    ) if sessions else {}  # fmt: skip
    replay_s = time.perf_counter() - started
    out = []
    for session in sessions:
        result = results[session.session_id]
        entry: dict[str, Any] = {
            "session_id": session.session_id,
            "user_id": session.user_id,
            "source": session.source,
            "recorded": {"summary": session.summary, "alerts": session.alerts},
            "replayed": {"summary": result.summary, "alerts": result.alerts},
        }
        if session.alerts is not None:
            entry["alerts_diff"] = compare(session.alerts, result.alerts)
        entry["summary_diff"] = summary_changes(session.summary, result.summary)
        out.append(entry)
    recorded_s = sum(float((e["replayed"]["summary"] or {}).get("duration_s") or 0.0) for e in out)
    what_if = {"profile": override.profile, "alerts": override.alerts} if override else None
    return {
        "source": source,
        "what_if": what_if,
        "sessions": out,
        "load_s": round(started - loaded_at, 3),
        "replay_s": round(replay_s, 3),
        "timings": timings,
        "recorded_span_s": round(recorded_s, 3),
        "times_real_time": round(recorded_s / replay_s, 1) if replay_s and recorded_s else None,
    }


def span_s(records: list[Record]) -> float:
    """Sample time a session covers, first sample to last (what "x real time" divides)."""
    times = [float(s["t"]) for r in records if r.get("kind") == "samples" for s in r["samples"]]
    return max(times) - min(times) if times else 0.0
