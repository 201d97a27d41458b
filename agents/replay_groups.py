"""``livecoach replay --group``: a group's members' sessions back through the live agents,
leaderboard included, and its final standings compared with the stored ones.

The members' sessions come from PostgreSQL (:func:`agents.replay_sources.from_database`),
each given its membership as the edge gave it live: the group on its start record
when it joined at the start, else an ``action: "group"`` record at ``joined_at``, and
one leaving it at ``left_at`` (the samples are split at those times, by sample time;
a ``left_at`` at or after the session's stop is the stop's: no leave).
Once every session stopped, the replay waits until each member's last input is on the
run's ``groups`` topic, appends the group's ``finished`` record after them, and reads
the final board: its rows against ``live_group_standings``. Isolation is
:func:`agents.replay.replay`'s (the board key too is under the run's prefix).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row

from agents.replay import Record, Recorded, ReplayError, replay
from agents.replay_sources import Selection, from_database
from pipeline.constants import GROUPS_TOPIC, LIVE_TOPIC
from pipeline.records import group_key
from pipeline.settings import Settings
from pipeline.transport import streams

#: The standing fields compared (the rest, such as alerts_open, are the same inputs).
COMPARED = ("athlete_id", "session_id", "rank", "status", "distance_m", "elapsed_s",
            "gap_m", "gap_s", "finish_s", "pct_target", "time_in_zone_s", "np_w",
            "w_per_kg", "alerts_open")  # fmt: skip


@dataclass
class RecordedGroup:
    group_id: str
    #: The group as a joining session's ``payload.group`` carries it (docs/groups.md).
    group: dict[str, Any]
    sessions: list[Recorded]
    #: The stored standings (``live_group_standings.standing``), best rank first.
    standings: list[dict[str, Any]] = field(default_factory=list)


def _ms(value: Any) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


async def group_from_database(database_url: str, group_id: str) -> RecordedGroup:
    """The group, its members' sessions (with their membership) and stored standings."""
    conn = await psycopg.AsyncConnection.connect(database_url)
    async with conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM live_groups WHERE id = %s", (group_id,))
        row = await cur.fetchone()
        if row is None:
            raise ReplayError(f"no group {group_id}")
        await cur.execute(
            "SELECT m.session_id, m.joined_at, m.left_at, m.joined_at <= s.started_at AS at_start"
            " FROM live_group_members m JOIN live_training_sessions s ON s.id = m.session_id"
            " WHERE m.group_id = %s ORDER BY m.joined_at",
            (group_id,),
        )
        members = await cur.fetchall()
        await cur.execute(
            "SELECT standing FROM live_group_standings WHERE group_id = %s"
            " ORDER BY rank NULLS LAST, athlete_id",
            (group_id,),
        )
        standings = [r["standing"] for r in await cur.fetchall()]
    group = {
        "id": str(row["id"]), "kind": row["kind"], "sport": row["sport"],
        "distance_m": row["distance_m"], "starts_at_ms": _ms(row["starts_at"]),
        "plan": row["plan"],
    }  # fmt: skip
    sessions = []
    for member in members:
        found = await from_database(database_url, Selection(session_id=member["session_id"]))
        for session in found:
            # Joined with its start: at the start (compared before any rounding to ms).
            joined = None if member["at_start"] else _ms(member["joined_at"])
            session.records = with_membership(
                session.records, group, joined, _ms(member["left_at"])
            )
            sessions.append(session)
    return RecordedGroup(str(row["id"]), group, sessions, standings)


def _split(records: list[Record], at_ms: int) -> tuple[list[Record], list[Record]]:
    """The records before ``at_ms`` and from it on, a sample batch cut by sample time."""
    before: list[Record] = []
    after: list[Record] = []
    for record in records:
        if record.get("kind") == "samples":
            samples = record.get("samples", [])
            early = [s for s in samples if float(s["t"]) * 1000 < at_ms]
            late = samples[len(early) :]
            if early:
                before.append({**record, "samples": early})
            if late:
                after.append({**record, "samples": late})
        elif int(record.get("at_ms", 0)) < at_ms or record.get("action") == "start":
            before.append(record)
        else:
            after.append(record)
    return before, after


def with_membership(
    records: list[Record], group: dict[str, Any], joined_ms: int | None, left_ms: int | None
) -> list[Record]:
    """``records`` (a start, samples, a stop) with the session joining and leaving."""
    start = records[0]
    base = {k: start[k] for k in ("session_id", "user_id")}
    start_ms = int(start.get("at_ms", 0))
    if joined_ms is None or joined_ms <= start_ms:
        payload = {**(start.get("payload") or {}), "group": group}
        out = [{**start, "payload": payload}, *records[1:]]
    else:
        before, after = _split(records, joined_ms)
        join = {**base, "kind": "control", "action": "group", "ingest_ms": joined_ms,
                "at_ms": joined_ms, "payload": {"group": group}}  # fmt: skip
        out = [*before, join, *after]
    stops = [int(r.get("at_ms", 0)) for r in records if r.get("action") == "stop"]
    if left_ms is not None and stops and left_ms >= stops[-1]:
        left_ms = None  # the stop ended the membership (its ``left_at``): it stopped in it
    if left_ms is not None:
        before, after = _split(out, left_ms)
        leave = {**base, "kind": "control", "action": "group", "ingest_ms": left_ms,
                 "at_ms": left_ms, "payload": {"group": None, "left": group["id"]}}  # fmt: skip
        out = [*before, leave, *after]
    return out


async def _finish_and_read(
    client: aioredis.Redis,
    prefix: str,
    recorded: RecordedGroup,
    timeout_s: float,
    into: dict[str, Any],
) -> None:
    """Wait for every member's last input, finish the group, read its final board."""
    groups, live = prefix + GROUPS_TOPIC, prefix + LIVE_TOPIC
    sessions = {s.session_id for s in recorded.sessions}
    deadline = time.monotonic() + timeout_s
    offset = 0
    done: set[str] = set()
    while done != sessions:
        if time.monotonic() > deadline:
            raise ReplayError(f"the group's inputs did not all arrive within {timeout_s:.0f} s")
        for entry_offset, (_, value, _, _) in await streams.read(
            client, groups, 0, offset, count=10_000, block_ms=200
        ):
            offset = entry_offset + 1
            record = json.loads(value) if value is not None else {}
            if record.get("kind") == "input" and record.get("status") in ("stopped", "left"):
                done.add(str(record["session_id"]))
    finished = {"kind": "control", "group_id": recorded.group_id, "action": "finished",
                "ingest_ms": 0, "at_ms": 0, "payload": {}}  # fmt: skip
    key = group_key(recorded.group_id)
    await streams.append(client, groups, 0, [(key, json.dumps(finished).encode(), None, 0)])
    offset = 0
    while True:
        if time.monotonic() > deadline:
            raise ReplayError(f"no final board within {timeout_s:.0f} s")
        for entry_offset, (_, value, _, _) in await streams.read(
            client, live, 0, offset, count=10_000, block_ms=200
        ):
            offset = entry_offset + 1
            event = json.loads(value) if value is not None else {}
            if event.get("type") == "leaderboard" and event.get("final"):
                into["board"] = event
                return
        await asyncio.sleep(0)


def differences(stored: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> list[str]:
    """What differs between two standings, row by row (empty: identical)."""
    out = []
    if len(stored) != len(replayed):
        out.append(f"{len(stored)} stored rows, {len(replayed)} replayed")
    for i, (a, b) in enumerate(zip(stored, replayed, strict=False)):
        for name in COMPARED:
            if a.get(name) != b.get(name):
                out.append(f"row {i + 1} {name}: stored {a.get(name)!r}, replayed {b.get(name)!r}")
    return out


async def replay_group(
    settings: Settings, redis_url: str, recorded: RecordedGroup, *, timeout_s: float = 600.0
) -> dict[str, Any]:
    """The group's final standings as replayed, beside the stored ones."""
    if not recorded.sessions:
        raise ReplayError(f"group {recorded.group_id} has no member session to replay")
    found: dict[str, Any] = {}

    async def finish(client: aioredis.Redis, prefix: str) -> None:
        await _finish_and_read(client, prefix, recorded, timeout_s, found)

    started = time.perf_counter()
    await replay(settings, redis_url, recorded.sessions, timeout_s=timeout_s, after=finish)
    rows = found["board"]["rows"]
    return {
        "group_id": recorded.group_id,
        "kind": recorded.group["kind"],
        "sessions": [s.session_id for s in recorded.sessions],
        "stored": recorded.standings,
        "replayed": rows,
        "differences": differences(recorded.standings, rows),
        "replay_s": round(time.perf_counter() - started, 3),
    }
