"""Where a replay's sessions come from: PostgreSQL or the ``samples`` stream.

- :func:`from_database`: the samples the store agent wrote to ``live_metrics``, the
  start and stop times of the summary row (``training_sessions``), the session's
  metadata (lap mode, plan) and the athlete's profile row as it is now. Not there:
  pauses, manual laps and mid-session profile edits (they live only on the stream),
  and device sequence numbers; times are PostgreSQL's (microseconds).
- :func:`from_stream`: the records of the production ``samples`` topic itself, read
  with XRANGE from an offset or a time (read-only: no consumer group is created, since
  a new group would hold back the topic's retention), so everything the agents saw
  live is replayed, in order. Only what retention still holds can be replayed, and a
  session is replayed only if its start record is in the range read.

Both give the alerts and summary recorded live from PostgreSQL (``live_alerts``,
``training_sessions.summary``) when a database is at hand.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row

from agents.replay import Record, Recorded, ReplayError
from pipeline.constants import SAMPLES_TOPIC
from pipeline.db import METRIC_FIELDS
from pipeline.transport import streams

_FIELD_OF = {metric_type: field for field, metric_type in METRIC_FIELDS.items()}
#: Columns of athlete_profiles that are not part of the profile the edge sends.
_NOT_PROFILE = ("user_id", "updated_at")
#: Entries read per XRANGE call.
_READ_COUNT = 5000


@dataclass(frozen=True)
class Selection:
    """Which sessions: one (``session_id``), an athlete's (``user_id``) or all, started
    in ``[since, until)`` (either open)."""

    session_id: UUID | None = None
    user_id: UUID | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self, column: str) -> tuple[str, list[Any]]:
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if self.session_id is not None:
            clauses.append("s.id = %s")
            params.append(self.session_id)
        if self.user_id is not None:
            clauses.append("s.user_id = %s")
            params.append(self.user_id)
        if self.since is not None:
            clauses.append(f"{column} >= %s")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"{column} < %s")
            params.append(self.until)
        return " AND ".join(clauses), params


def _ms(value: dt.datetime) -> int:
    return round(value.timestamp() * 1000)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


async def recorded_outcome(
    conn: psycopg.AsyncConnection[Any], session_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The alerts (oldest first) and the summary the live path stored for a session."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT payload FROM live_alerts WHERE live_session_id = %s ORDER BY triggered_at, id",
            (session_id,),
        )
        alerts = [row[0] for row in await cur.fetchall()]
        await cur.execute(
            "SELECT t.summary FROM live_training_sessions s"
            " JOIN training_sessions t ON t.id = s.training_session_id WHERE s.id = %s",
            (session_id,),
        )
        row = await cur.fetchone()
    return alerts, (row[0] if row is not None and row[0] else None)


async def from_database(database_url: str, selection: Selection) -> list[Recorded]:
    """The selected sessions rebuilt from PostgreSQL, oldest first."""
    where, params = selection.where("s.started_at")
    out: list[Recorded] = []
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT s.id, s.user_id, s.metadata, s.started_at, s.last_update_at,"
                " t.started_at AS summary_started_at, t.ended_at"
                " FROM live_training_sessions s"
                " LEFT JOIN training_sessions t ON t.id = s.training_session_id"
                f" WHERE {where} ORDER BY s.started_at, s.id",
                params,
            )
            sessions = await cur.fetchall()
        for session in sessions:
            sid, uid = str(session["id"]), str(session["user_id"])
            samples = await _samples(conn, sid)
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute("SELECT * FROM athlete_profiles WHERE user_id = %s", (uid,))
                profile = await cur.fetchone()
            start_ms = _ms(session["summary_started_at"] or session["started_at"])
            if session["ended_at"] is not None:
                stop_ms = _ms(session["ended_at"])
            elif samples:  # still running, or never stopped: end after the last sample
                stop_ms = round(samples[-1]["t"] * 1000) + 1000
            else:
                stop_ms = _ms(session["last_update_at"])
            metadata = session["metadata"] or {}
            payload: dict[str, Any] = {"metadata": metadata}
            if profile is not None:
                payload["profile"] = _jsonable(
                    {k: v for k, v in profile.items() if k not in _NOT_PROFILE}
                )
            if metadata.get("lap_mode") in ("distance", "time"):
                payload["lap_mode"] = metadata["lap_mode"]
            base = {"session_id": sid, "user_id": uid, "ingest_ms": start_ms}
            records: list[Record] = [
                {**base, "kind": "control", "action": "start", "at_ms": start_ms,
                 "payload": payload},
                {**base, "kind": "samples", "samples": samples},
                {**base, "kind": "control", "action": "stop", "at_ms": stop_ms, "payload": {}},
            ]  # fmt: skip
            alerts, summary = await recorded_outcome(conn, sid)
            out.append(Recorded(sid, uid, records, alerts, summary, source="database"))
    return out


async def _samples(conn: psycopg.AsyncConnection[Any], session_id: str) -> list[dict[str, Any]]:
    """The session's samples from its live_metrics rows (one row per metric and time)."""
    by_time: dict[float, dict[str, Any]] = {}
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT extract(epoch FROM timestamp)::float8, metric_type, value FROM live_metrics"
            " WHERE live_session_id = %s ORDER BY timestamp",
            (session_id,),
        )
        async for t, metric_type, value in cur:
            field = _FIELD_OF.get(metric_type)
            if field is None:
                continue
            sample = by_time.get(t)
            if sample is None:
                sample = by_time[t] = {"session_id": session_id, "t": t}
            sample[field] = value
    return list(by_time.values())


async def from_stream(
    client: aioredis.Redis,
    selection: Selection,
    *,
    from_offset: int | None = None,
    database_url: str | None = None,
) -> list[Recorded]:
    """The selected sessions' records from the ``samples`` topic, each partition read
    from ``from_offset`` (default: the oldest entry retention kept) or from the first
    entry at or after ``selection.since``; entries after ``selection.until`` end it."""
    partitions = await streams.partition_count(client, SAMPLES_TOPIC)
    if not partitions:
        raise ReplayError(f"no {SAMPLES_TOPIC!r} topic in this Redis: nothing to replay")
    since_ms = _ms(selection.since) if selection.since is not None else None
    until_ms = _ms(selection.until) if selection.until is not None else None
    by_session: dict[str, list[Record]] = defaultdict(list)
    wanted_sid = str(selection.session_id) if selection.session_id is not None else None
    wanted_uid = str(selection.user_id) if selection.user_id is not None else None
    for partition in range(partitions):
        offset = max(from_offset or 0, await streams.earliest(client, SAMPLES_TOPIC, partition))
        end = await streams.highwater(client, SAMPLES_TOPIC, partition)
        while offset < end:
            entries = await streams.read(
                client, SAMPLES_TOPIC, partition, offset - 1, count=_READ_COUNT
            )
            if not entries:
                break
            for entry_offset, (key, value, _, ts_ms) in entries:
                offset = entry_offset + 1
                if value is None or (since_ms is not None and ts_ms < since_ms):
                    continue
                if until_ms is not None and ts_ms >= until_ms:
                    offset = end
                    break
                if wanted_sid is not None and key != wanted_sid.encode():
                    continue
                record = json.loads(value)
                if not isinstance(record, dict) or "session_id" not in record:
                    continue
                if wanted_uid is not None and str(record.get("user_id")) != wanted_uid:
                    continue
                by_session[str(record["session_id"])].append(record)
    out: list[Recorded] = []
    conn = await psycopg.AsyncConnection.connect(database_url) if database_url else None
    try:
        for sid, records in by_session.items():
            starts = [i for i, r in enumerate(records) if r.get("action") == "start"]
            if not starts:
                continue  # started before the range: its state is unknown
            records = records[starts[0] :]
            alerts, summary = (
                await recorded_outcome(conn, sid) if conn is not None else (None, None)
            )
            uid = str(records[0]["user_id"])
            out.append(Recorded(sid, uid, records, alerts, summary, source="stream"))
    finally:
        if conn is not None:
            await conn.close()
    out.sort(key=lambda r: int(r.records[0].get("at_ms", 0)))
    return out
