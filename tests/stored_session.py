"""A session stored in PostgreSQL as the live path stores it (samples in live_metrics,
the summary row's start and stop), for the replay, export and plot tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from typing import Any

import psycopg

from pipeline.db import finish_session, insert_metric_rows, metric_rows


def interval_samples(session_id: str, t0: float, duration_s: int = 1200) -> list[dict[str, Any]]:
    """1 Hz, whole-number HR, power and cadence (as devices record them): 5 min easy,
    then 3 min hard / 2 min easy, with HR following the effort."""
    out = []
    hr = 110.0
    for i in range(duration_s):
        hard = i >= 300 and (i - 300) % 300 < 180
        power = (290 if hard else 150) + round(12 * math.sin(i / 5))
        hr += ((172 if hard else 128) - hr) / 40
        out.append({"session_id": session_id, "t": t0 + i, "heart_rate": float(round(hr)),
                    "power_w": float(power), "cadence": 90.0, "speed_m_s": 9.0 if hard else 7.0,
                    "distance_m": 8.0 * i, "altitude_m": 100.0})  # fmt: skip
    return out


def store_session(database_url: str, user_id: uuid.UUID, samples: list[dict[str, Any]]) -> str:
    """Store ``samples`` as a completed live session of ``user_id``; its id."""
    sid = str(samples[0]["session_id"])

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO users (id, name) VALUES (%s, 'athlete') ON CONFLICT DO NOTHING",
                (user_id,),
            )
            await conn.execute(
                "INSERT INTO live_training_sessions (id, user_id, status, started_at, metadata)"
                " VALUES (%s, %s, 'completed', to_timestamp(%s), '{\"sport\": \"ride\"}')",
                (sid, user_id, samples[0]["t"]),
            )
            rows = [r for s in samples for r in metric_rows(sid, s["t"], s)]
            await insert_metric_rows(conn, rows)
            start = dt.datetime.fromtimestamp(samples[0]["t"], dt.UTC)
            end = dt.datetime.fromtimestamp(samples[-1]["t"] + 1, dt.UTC)
            await finish_session(conn, sid, sport="ride", started_at=start, ended_at=end,
                                 summary={})  # fmt: skip

    asyncio.run(run())
    return sid
