"""Fan-out: one reader of every partition of ``live`` per edge, routing to local sockets.

:class:`Hub` keeps channel -> connections. :class:`LiveTailer` runs one blocking
``XREAD`` over all partitions of ``live`` (not one read per session or socket), parses
each entry once, serialises it once into the frame every socket gets (with its
``offset`` cursor and ``channels``), and hands it to the subscribed connections.

:attr:`LiveTailer.positions` is the last offset dispatched per partition. A subscribe
or resume reads it in the same event-loop step in which it registers the connection,
so every later event reaches the connection through the hub and every earlier one is
at or below the position: this is what makes resume exact.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pipeline import tracing
from pipeline.constants import LIVE_TOPIC
from pipeline.tracing import TRACEPARENT
from pipeline.transport.streams import (
    decode_entry,
    highwater,
    offset_of,
    stream_id,
    stream_key,
    xread_streams,
)
from web.connection import Connection, LiveEvent
from web.observability import EdgeMetrics
from web.protocol import channels_of_event, format_cursor
from web.wire import to_wire

log = logging.getLogger(__name__)

#: Alert ids remembered to drop a repeat published after a worker crash.
_ALERT_IDS_KEPT = 50_000


class Hub:
    def __init__(self) -> None:
        self.channels: dict[str, set[Connection]] = defaultdict(set)

    def add(self, name: str, conn: Connection) -> None:
        self.channels[name].add(conn)

    def remove(self, name: str, conn: Connection) -> None:
        conns = self.channels.get(name)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.channels[name]

    def remove_all(self, conn: Connection) -> None:
        for name in list(conn.subscriptions):
            self.remove(name, conn)

    def dispatch(self, event: LiveEvent) -> int:
        """Deliver to each subscribed connection once; how many matched."""
        targets: set[Connection] = set()
        for name in event.channels:
            conns = self.channels.get(name)
            if conns:
                targets.update(conns)
        for conn in targets:
            conn.deliver(event)
        return len(targets)

    def broadcast_ephemeral(self, channels: list[str], frame: str, kind: str) -> None:
        """Typing and presence: no offset, no replay, never coalesced; once per socket."""
        targets: set[Connection] = set()
        for name in channels:
            targets.update(self.channels.get(name, ()))
        for conn in targets:
            if conn.parked is None:
                conn.send(frame, kind)


def build_event(
    partition: int,
    offset: int,
    value: bytes | None,
    traceparent: bytes | None = None,
    *,
    timestamp_ms: int | None = None,
    read_at: float | None = None,
) -> LiveEvent | None:
    """Parse a ``live`` entry into the frame sockets get; None if it is not an event.

    ``timestamp_ms``: the entry's (when the agent handed it to its producer), given to
    a ``leaderboard`` as ``emit_ms``; ``read_at``: when this edge read it live."""
    if value is None:  # a tombstone: nothing to show
        return None
    try:
        data = orjson.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    channels = channels_of_event(data)
    if not channels:
        return None
    to_wire(data)
    kind = data["type"]
    if kind == "leaderboard" and timestamp_ms:
        data["emit_ms"] = timestamp_ms
    data["offset"] = format_cursor(partition, offset)
    data["channel"] = channels[0]
    data["channels"] = channels
    ingest = data.get("ingest_ms")
    session_id = data.get("session_id")
    return LiveEvent(
        partition=partition,
        offset=offset,
        kind=data["type"],
        channels=tuple(channels),
        frame=orjson.dumps(data).decode(),
        session_id=session_id if isinstance(session_id, str) else None,
        ingest_ms=int(ingest) if isinstance(ingest, int | float) else None,
        traceparent=traceparent,
        # Kept parsed for the sockets' pacing (web.boards), which merges boards.
        data=data if kind == "leaderboard" and isinstance(data.get("group_id"), str) else None,
        read_at=read_at,
    )


class RecentEvents:
    """The last ``per_partition`` entries the tailer read, per partition (None for an
    entry that is not an event), so that resumes of a recent gap replay from memory."""

    def __init__(self, partitions: int, per_partition: int) -> None:
        self.per_partition = per_partition
        self._rings: list[deque[LiveEvent | None]] = [
            deque(maxlen=per_partition) for _ in range(partitions)
        ]
        self._first = [0] * partitions

    def add(self, partition: int, offset: int, event: LiveEvent | None) -> None:
        ring = self._rings[partition]
        if ring.maxlen == 0:
            return
        if ring and offset != self._first[partition] + len(ring):
            ring.clear()  # a gap (trimmed before read): only contiguous ranges are held
        if not ring:
            self._first[partition] = offset
        elif len(ring) == ring.maxlen:
            self._first[partition] += 1  # the append drops the oldest
        ring.append(event)

    def range(self, partition: int, start: int, end: int) -> list[LiveEvent | None] | None:
        """Entries ``start``..``end`` (inclusive) if all are held, else None."""
        ring = self._rings[partition]
        first = self._first[partition]
        if not ring or start < first or end > first + len(ring) - 1:
            return None
        return list(itertools.islice(ring, start - first, end - first + 1))


class LiveTailer:
    def __init__(
        self,
        redis: aioredis.Redis,
        hub: Hub,
        partitions: int,
        metrics: EdgeMetrics,
        *,
        block_ms: int = 1000,
        count: int = 1000,
        recent_per_partition: int = 20_000,
        on_session_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._redis = redis
        #: Called with each ``session_event`` read (parsed), before it is dispatched.
        self._on_session_event = on_session_event
        self._hub = hub
        self.partitions = partitions
        self._metrics = metrics
        self._block_ms = block_ms
        self._count = count
        self.positions: list[int] = [-1] * partitions
        self._keys = [stream_key(LIVE_TOPIC, p) for p in range(partitions)]
        # Alert id -> where it was first seen (oldest first; bounded).
        self._alert_offsets: dict[str, tuple[int, int]] = {}
        self._key_partition = {k.encode(): p for p, k in enumerate(self._keys)}
        self.healthy = False
        self.gaps = 0
        self.recent = RecentEvents(partitions, recent_per_partition)

    async def start_positions(self) -> None:
        """Start at the end of every partition (history is what resume is for), with
        the memory of the last entries rebuilt from the stream: the recent events a
        resume replays from, and the alert ids already delivered, so that an alert
        published again by a worker before this edge (re)started is still known as a
        repeat (the memory used to die with the edge, and a resume after a restart
        delivered both copies)."""
        for p in range(self.partitions):
            end = await highwater(self._redis, LIVE_TOPIC, p) - 1
            self.positions[p] = end
            if end >= 0 and self.recent.per_partition > 0:
                await self._warm(p, end)
        self.healthy = True

    async def _warm(self, partition: int, end: int) -> None:
        start = max(0, end - self.recent.per_partition + 1)
        entries: Any = await self._redis.xrange(
            self._keys[partition], stream_id(start), stream_id(end)
        )
        for entry_id, fields in entries:
            offset = offset_of(entry_id)
            _, value, _, timestamp_ms = decode_entry(fields)
            event = build_event(partition, offset, value, timestamp_ms=timestamp_ms)
            if event is not None and event.kind == "alert" and self.repeated_alert(event):
                event = None
            self.recent.add(partition, offset, event)

    async def run(self) -> None:
        backoff_s = 0.1
        while True:
            try:
                streams: dict[Any, Any] = {
                    key: stream_id(self.positions[p]) for p, key in enumerate(self._keys)
                }
                # One XREAD for every partition (on a Redis Cluster, one per node).
                reply = await xread_streams(
                    self._redis, streams, count=self._count, block_ms=self._block_ms
                )
                self.healthy = True
                backoff_s = 0.1
            except (RedisError, OSError) as exc:
                self.healthy = False
                self._metrics.backend_errors.labels("redis").inc()
                log.warning("reading %s failed (%s); retrying in %.1fs", LIVE_TOPIC, exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(5.0, backoff_s * 2)
                continue
            for key, entries in reply:
                raw_key = key if isinstance(key, bytes) else str(key).encode()
                partition = self._key_partition[raw_key]
                for entry_id, fields in entries:
                    self._handle(partition, offset_of(entry_id), fields)

    def _handle(self, partition: int, offset: int, fields: Any) -> None:
        if offset != self.positions[partition] + 1 and self.positions[partition] >= 0:
            # Entries were trimmed before this edge read them: live sockets on this
            # partition missed events; they learn it on their next resume.
            self.gaps += 1
            log.warning(
                "live/%d: skipped from %d to %d (trimmed before read)",
                partition,
                self.positions[partition],
                offset,
            )
        self.positions[partition] = offset
        _, value, headers, timestamp_ms = decode_entry(fields)
        parent = headers.get(TRACEPARENT) if tracing.tracer() is not None else None
        event = build_event(
            partition, offset, value, parent, timestamp_ms=timestamp_ms, read_at=time.monotonic()
        )
        if event is not None and event.data is not None and event.kind == "leaderboard":
            # The board's first two hops, once per board and edge (the rest per socket).
            now_ms = time.time() * 1000
            if event.ingest_ms is not None and timestamp_ms:
                self._metrics.board_hop_s("ingest_to_emit", (timestamp_ms - event.ingest_ms) / 1e3)
            if timestamp_ms:
                self._metrics.board_hop_s("emit_to_read", (now_ms - timestamp_ms) / 1e3)
        if event is not None and event.kind == "alert" and self.repeated_alert(event):
            event = None
        if event is not None and event.kind == "session_event" and self._on_session_event:
            self._on_session_event(orjson.loads(event.frame))
        self.recent.add(partition, offset, event)
        if event is not None:
            self._hub.dispatch(event)

    def repeated_alert(self, event: LiveEvent) -> bool:
        """An alert the agents published again (same id) after a crash: delivered once.

        The agents publish before they save their state, so a worker killed in between
        re-raises the alert on replay rather than losing it; its id is deterministic.
        Whichever copy this edge meets first (live, warming up or replaying) is the one
        delivered; memory holds the last ``_ALERT_IDS_KEPT`` ids.
        """
        alert_id = orjson.loads(event.frame).get("alert", {}).get("id")
        if not isinstance(alert_id, str):
            return False
        first = self._alert_offsets.setdefault(alert_id, (event.partition, event.offset))
        if len(self._alert_offsets) > _ALERT_IDS_KEPT:
            self._alert_offsets.pop(next(iter(self._alert_offsets)))
        return first != (event.partition, event.offset)

    async def measure_lag(self) -> None:
        for p in range(self.partitions):
            head = await highwater(self._redis, LIVE_TOPIC, p)
            self._metrics.stream_lag.labels(str(p)).set(max(0, head - 1 - self.positions[p]))


def positions_snapshot(tailer: LiveTailer) -> list[int]:
    return list(tailer.positions)


__all__ = ["Hub", "LiveTailer", "build_event", "positions_snapshot"]
