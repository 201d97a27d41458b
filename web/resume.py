"""Subscribing and resuming: registering a connection on channels at an exact position.

Subscribe: the connection is registered and its floors set to the tailer's positions in
one event-loop step, so it gets every later event and none earlier.

Resume (``{"type": "resume", "cursors": {channel: ["p:o", ...]}}``): the connection is
registered and *parked* (live events are held) in one step, at tailer positions ``P``;
the missed events (cursor, P] are read back from the stream with XRANGE and delivered;
then ``resumed`` is sent per channel and the parked live events follow, filtered by the
per-channel floors so nothing arrives twice. When the stream no longer holds the event
after a cursor (trimmed by retention), that channel is answered ``recovered: false``
with a snapshot of the latest state from PostgreSQL instead of a replay.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pipeline.constants import LIVE_TOPIC
from pipeline.records import session_key
from pipeline.transport.streams import decode_entry, offset_of, stream_id, stream_key
from web.connection import Connection, LiveEvent, Subscription
from web.edge import Edge
from web.fanout import build_event
from web.groups import read_board
from web.protocol import Channel, format_cursor
from web.wire import to_wire

#: Events queued between two waits for the socket to drain, during a resume.
_PAGE = 100
_FLUSH_S = 5.0


def cursor_of(sub: Subscription, channel: Channel, partitions: int) -> list[str]:
    return [format_cursor(p, sub.floors.get(p, -1)) for p in channel.partitions(partitions)]


def subscribe(edge: Edge, conn: Connection, channel: Channel) -> list[str]:
    """Register ``conn`` on ``channel`` from now on; the cursor it starts from."""
    tailer = edge.need_tailer()
    sub = conn.subscriptions.get(channel.name)
    if sub is None:
        sub = Subscription(channel)
        for p in channel.partitions(tailer.partitions):
            sub.floors[p] = tailer.positions[p]
        conn.subscriptions[channel.name] = sub
        edge.hub.add(channel.name, conn)
    return cursor_of(sub, channel, tailer.partitions)


def unsubscribe(edge: Edge, conn: Connection, name: str) -> bool:
    if conn.subscriptions.pop(name, None) is None:
        return False
    edge.hub.remove(name, conn)
    return True


async def _read_back(
    edge: Edge,
    p: int,
    start: int,
    end: int,
    channels: set[str],
    only_keys: set[bytes] | None,
) -> tuple[list[LiveEvent], int | None]:
    """Events of partition ``p`` from ``start`` to ``end`` on any of ``channels``:
    (events, first offset the stream still held). From the tailer's memory when it holds
    the range (a reconnect storm then costs no Redis call and no JSON parsing), else
    XRANGE, skipping entries whose key is not in ``only_keys`` before parsing them."""
    tailer = edge.need_tailer()
    held = tailer.recent.range(p, start, end)
    if held is not None:
        # Most of a partition's events are other channels': one pass, no per-event call.
        return [e for e in held if e is not None and not channels.isdisjoint(e.channels)], start
    redis = edge.need_redis()
    events: list[LiveEvent] = []
    first: int | None = None
    next_offset = start
    while next_offset <= end:
        page = await redis.xrange(
            stream_key(LIVE_TOPIC, p), stream_id(next_offset), stream_id(end), count=1000
        )
        if not page:
            break
        for entry_id, fields in page:
            offset = offset_of(entry_id)
            if first is None:
                first = offset
            next_offset = offset + 1
            key, value, _, timestamp_ms = decode_entry(fields)
            if only_keys is not None and key not in only_keys:
                continue
            event = build_event(p, offset, value, timestamp_ms=timestamp_ms)
            if event is None or (event.kind == "alert" and tailer.repeated_alert(event)):
                continue
            if channels.isdisjoint(event.channels):
                continue
            events.append(event)
    return events, first


async def send_stored_boards(edge: Edge, conn: Connection, channels: list[Channel]) -> None:
    """Each group's stored full board to ``conn`` (merged with the boards that came
    meanwhile: see web.boards), after ``conn.boards.start_snapshot`` was called for it."""
    failure: Exception | None = None
    for channel in channels:
        group_id = str(channel.ident)
        board: dict[str, Any] | None = None
        try:
            board = await read_board(edge.need_redis(), group_id)
        except Exception as exc:  # every group is released; the first failure is raised
            failure = failure or exc
        if board is not None:
            board = to_wire(dict(board))
            board.pop("offset", None)  # not read from the stream: no position
            board.update(full=True, channel=channel.name, channels=[channel.name])
        conn.boards.snapshot(group_id, board)
    if failure is not None:
        raise failure


async def _snapshot(edge: Edge, channel: Channel) -> dict[str, Any]:
    store = edge.need_store()
    if channel.kind == "group":
        # The board itself comes as a leaderboard frame (send_stored_boards).
        return {
            "recent_messages": await store.group_messages(channel.ident, before_id=None, limit=20)
        }

    async def session_state(session_id: UUID) -> dict[str, Any]:
        return {
            "session": await store.get_session(session_id),
            "latest_metrics": await store.latest_metrics(session_id),
            "open_alerts": await store.alerts(session_id, unacknowledged=True, limit=50),
            "recent_messages": await store.messages(session_id, before_id=None, limit=20),
        }

    if channel.kind == "session":
        return await session_state(channel.ident)
    sessions = await store.open_sessions(channel.ident)
    return {"sessions": [await session_state(row["id"]) for row in sessions]}


@dataclass
class Replay:
    """What a resume did: the ``resumed`` frames (already queued) and its cost in
    entries (each entry of a partition range read, ``snapshot_cost`` per snapshot)."""

    frames: list[dict[str, Any]]
    cost: int


async def resume(
    edge: Edge, conn: Connection, requests: dict[Channel, dict[int, int]], budget: int
) -> Replay:
    """Replay what each channel missed, reading at most ``budget`` entries (offsets are
    consecutive, so a range's size is known before it is read): a channel whose gap
    does not fit is answered ``recovered: false`` with a snapshot."""
    tailer = edge.need_tailer()
    n = tailer.partitions
    # --- one synchronous step: register, park, note the positions -------------------
    conn.parked = [] if conn.parked is None else conn.parked
    positions = list(tailer.positions)
    needs: dict[int, int] = {}  # partition -> first offset to read
    for channel, cursors in requests.items():
        sub = conn.subscriptions.get(channel.name)
        if sub is None:
            sub = conn.subscriptions[channel.name] = Subscription(channel)
            edge.hub.add(channel.name, conn)
        for p in channel.partitions(n):
            last = cursors.get(p, positions[p])
            sub.floors[p] = last
            if last < positions[p]:
                needs[p] = min(needs.get(p, last + 1), last + 1)
    groups = [c for c in requests if c.kind == "group"]
    for channel in groups:
        conn.boards.start_snapshot(str(channel.ident))
    by_name = {channel.name: channel for channel in requests}
    lost: set[Channel] = set()
    replayed: dict[Channel, int] = defaultdict(int)
    cost = 0
    try:
        # --- read back (cursor, P] per partition, once for all channels ------------------
        # Only session channels asked: entries of other sessions are skipped by their
        # key, before any JSON is parsed.
        only_keys: set[bytes] | None = None
        if all(c.kind == "session" for c in requests):
            only_keys = {session_key(c.ident) for c in requests}
        for p, start in sorted(needs.items()):
            span = positions[p] - start + 1
            too_many = span > budget
            events: list[LiveEvent] = []
            first: int | None = None
            if not too_many:
                budget -= span
                cost += span
                events, first = await _read_back(
                    edge, p, start, positions[p], set(by_name), only_keys
                )
            for channel, cursors in requests.items():
                if p not in channel.partitions(n):
                    continue
                last = cursors.get(p, positions[p])
                if last >= positions[p]:
                    continue
                if too_many or first is None or first > last + 1:
                    lost.add(channel)
            # Matched through the event's own few channels, never a call per channel.
            live = {name for name, c in by_name.items() if c not in lost}
            for i, event in enumerate(events):
                if not any(name in live for name in event.channels):
                    continue
                if conn.wants(event):
                    conn.send_event(event, coalesce=False, replayed=True)
                    for name in event.channels:
                        if name in by_name:
                            replayed[by_name[name]] += 1
                if i % _PAGE == _PAGE - 1:
                    # Back-pressure: let the socket take a page before queueing more.
                    await conn.flush(_FLUSH_S)
        # --- the groups' stored boards, with the deltas replayed merged onto them -------
        snapshots, groups = groups, []
        await send_stored_boards(edge, conn, snapshots)
        # --- answer, then let the parked live events through ----------------------------
        frames: list[dict[str, Any]] = []
        for channel in requests:
            sub = conn.subscriptions[channel.name]
            frame: dict[str, Any] = {
                "type": "resumed",
                "channel": channel.name,
                "recovered": channel not in lost,
                "replayed": replayed[channel],
            }
            if channel in lost:
                for p in channel.partitions(n):
                    sub.floors[p] = max(sub.floors.get(p, -1), positions[p])
                frame["snapshot"] = await _snapshot(edge, channel)
                cost += edge.config.snapshot_cost
                edge.metrics.resumes.labels("snapshot").inc()
            else:
                edge.metrics.resumes.labels("recovered").inc()
            frame["cursor"] = cursor_of(sub, channel, n)
            edge.metrics.replayed.inc(replayed[channel])
            frames.append(frame)
            conn.send(json.dumps(frame, separators=(",", ":"), default=str), "resumed")
        return Replay(frames, cost)
    finally:
        for channel in groups:  # the replay failed before the boards were read
            conn.boards.snapshot(str(channel.ident), None)
        # Live events that came during the replay, in pages; ones arriving meanwhile
        # keep being parked, so the order holds. Not coalesced: resume is exact.
        while conn.parked and not conn.closing:
            held, conn.parked = conn.parked[:_PAGE], conn.parked[_PAGE:]
            for live_event in held:
                if conn.wants(live_event):
                    conn.send_event(live_event, coalesce=False)
            await conn.flush(_FLUSH_S)
        conn.parked = None
