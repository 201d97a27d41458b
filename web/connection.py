"""One WebSocket client: its subscriptions, its stream floors and its send queue.

The send queue is bounded. A writer task drains it into the socket, so a slow client
never blocks the fan-out. While frames wait, a newer ``metrics_update`` of the same
session replaces the older one (latest wins); alerts, messages and everything else are
never dropped. A client whose queue still overflows is closed with
:data:`~web.protocol.CLOSE_TOO_SLOW` and is expected to reconnect and resume.

Stream floors: per subscribed channel and partition, the last offset the client has
(or is deemed to have) seen; live events at or below it are not delivered again. While
a ``resume`` is being replayed, live events are parked in :attr:`Connection.parked` and
delivered after the replay, so nothing is missed and nothing comes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiohttp import web
from opentelemetry.trace import SpanKind

from pipeline import tracing
from web.auth import Principal
from web.boards import BoardPacer
from web.observability import EdgeMetrics
from web.protocol import CLOSE_TOO_SLOW, Channel

log = logging.getLogger(__name__)


@dataclass
class _Item:
    frame: str
    kind: str
    coalesce_key: Any = None
    ingest_ms: int | None = None
    alive: bool = True
    #: A replayed event (resume): its age is not a live latency.
    replayed: bool = False
    #: The W3C trace context of the live agent's span (only while tracing is on).
    traceparent: bytes | None = None
    #: The writer took it off the queue (a leaderboard is merged into it only before).
    taken: bool = False
    #: The socket took it (``send_str`` returned; a big frame waits for the transport),
    #: and when (monotonic s).
    written: bool = False
    written_at: float | None = None
    #: A leaderboard frame's, set by web.boards: its group, whether it is the group's
    #: final board, and when the edge read the newest board it includes (monotonic s;
    #: None: not a live board).
    group: str | None = None
    final: bool = False
    read_at: float | None = None
    #: When it was queued (monotonic s).
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class Subscription:
    channel: Channel
    #: partition -> last offset delivered (or deemed seen) on this channel.
    floors: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveEvent:
    """An event of ``live``, routed and serialised once for every socket."""

    partition: int
    offset: int
    kind: str
    channels: tuple[str, ...]
    frame: str
    #: As the event carries it (canonical UUID text): only a coalescing key here.
    session_id: str | None
    ingest_ms: int | None
    #: The ``traceparent`` header of the entry (None unless the edge traces).
    traceparent: bytes | None = None
    #: A ``leaderboard`` event parsed (wire form, shared by every socket: read only),
    #: for the per-socket pacing of web.boards; None for other events.
    data: dict[str, Any] | None = field(default=None, compare=False)
    #: When this edge read it from ``live`` (monotonic s); None: not read live (a
    #: resume's replay, the warm-up).
    read_at: float | None = field(default=None, compare=False)


#: The member-only channels of a socket that follows no group as a member (shared).
_NO_CHANNELS: frozenset[str] = frozenset()

#: Frames the writer sends before it lets other tasks run.
_YIELD_EVERY = 64


def _unsent(transport: asyncio.Transport) -> int:
    return transport.get_write_buffer_size()


class TokenBucket:
    """``rate`` tokens a second, up to ``burst``; :meth:`take` says whether one was left."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def refill(self, now: float | None = None) -> float:
        """Add what accrued since the last call; the tokens now available."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def spend(self, n: float) -> None:
        """Take ``n`` tokens that were already used (may go below zero: a debt)."""
        self.refill()
        self.tokens -= n


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        metrics: EdgeMetrics,
        *,
        max_queue: int,
        coalesce_after: int = 16,
        frame_rate: float,
        frame_burst: float,
        transport: asyncio.Transport | None = None,
        close_timeout_s: float = 2.0,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self._close_timeout_s = close_timeout_s
        self.metrics = metrics
        self.principal: Principal | None = None
        self._presence_id: str | None = None
        self.subscriptions: dict[str, Subscription] = {}
        #: Live events held while a resume replays; None when not resuming.
        self.parked: list[LiveEvent] | None = None
        self.bucket = TokenBucket(frame_rate, frame_burst)
        self._max_queue = max_queue
        self._coalesce_after = coalesce_after
        # An idle socket (most of an edge's, 10,000 in ``bench e2e``'s idle phase) holds
        # no queue, coalescing map, writer task or Event: each exists only while frames
        # wait (a deque is 760 B even empty, an Event another deque, a finished Task
        # kept with its entry in asyncio's task set ~700 B), and is dropped once the
        # writer has drained them.
        self._queue: deque[_Item] | None = None
        self._size = 0
        self._coalesce: dict[Any, _Item] | None = None
        #: Set when the writer drains; made only for a flush() waiting for that.
        self._drained: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writing = False
        self.closing = False
        #: Last time anything came from the client (monotonic), for the idle timeout.
        self.last_seen = time.monotonic()
        #: channel -> athlete id of channels this socket watches as someone else (presence).
        self.watched: dict[str, UUID] = {}
        #: Group channels this socket follows as a member, not as the coach: the
        #: members' alerts delivered there are the coach's only. None until the first
        #: (most sockets follow no group; an empty set is 216 B).
        self._member_only: set[str] | None = None
        #: group id -> when its last leaderboard frame was written (monotonic s), for
        #: the edge's own evidence of the pacing (livecoach_leaderboard_gap_seconds).
        self._board_written: dict[str, float] | None = None
        self._boards: BoardPacer | None = None
        self.close_code: int | None = None

    @property
    def presence_id(self) -> str:
        """This socket in presence entries (web.presence), unique across edges; made on
        first use (only sockets following an athlete appear in presence)."""
        if self._presence_id is None:
            self._presence_id = uuid.uuid4().hex[:16]
        return self._presence_id

    @property
    def member_only(self) -> frozenset[str] | set[str]:
        """Group channels this socket follows as a member (read only: see
        :meth:`set_member_only`)."""
        return self._member_only if self._member_only is not None else _NO_CHANNELS

    def set_member_only(self, channel: str, member: bool) -> None:
        """Whether this socket follows group ``channel`` as a member (True) or as its
        coach, or no longer follows it (False)."""
        if member:
            if self._member_only is None:
                self._member_only = set()
            self._member_only.add(channel)
        elif self._member_only is not None:
            self._member_only.discard(channel)

    @property
    def boards(self) -> BoardPacer:
        """Leaderboards: at most one frame per group a second, merged when behind.

        Made on first use: most sockets follow no group, and an idle socket's memory is
        what 10,000 of them cost (``bench e2e``'s idle KB per socket)."""
        if self._boards is None:
            self._boards = BoardPacer(
                lambda frame, ingest_ms: self.send(frame, "leaderboard", ingest_ms=ingest_ms),
                on_merge=self.metrics.coalesced.inc,
            )
            if self.closing:
                self._boards.close()
        return self._boards

    # --- sending ----------------------------------------------------------------------

    def send(
        self,
        frame: str,
        kind: str,
        *,
        coalesce_key: Any = None,
        ingest_ms: int | None = None,
        replayed: bool = False,
        traceparent: bytes | None = None,
    ) -> _Item | None:
        """Queue a pre-serialised frame; never blocks, never awaits. The queued item
        (None: the socket is closing)."""
        if self.closing:
            return None
        if coalesce_key is not None and self._size >= self._coalesce_after:
            # Only a backlog makes a client "slow": a burst that the writer is about to
            # send in one go still delivers every update.
            older = self._coalesce.get(coalesce_key) if self._coalesce is not None else None
            if older is not None and older.alive:
                older.alive = False
                self._size -= 1
                self.metrics.coalesced.inc()
        item = _Item(frame, kind, coalesce_key, ingest_ms, True, replayed, traceparent)
        if coalesce_key is not None:
            if self._coalesce is None:
                self._coalesce = {}
            self._coalesce[coalesce_key] = item
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        self._size += 1
        if self._size > self._max_queue:
            self.close_soon(CLOSE_TOO_SLOW, "too far behind; reconnect and resume")
            return None
        if not self._writing:
            # A writer task exists only while frames wait: an idle socket costs no task.
            self._writing = True
            self._writer = asyncio.create_task(self._write_all())
        return item

    def send_event(
        self, event: LiveEvent, *, coalesce: bool = True, replayed: bool = False
    ) -> None:
        """Queue a live event. A resume passes ``coalesce=False`` (resume is exact), and
        ``replayed=True`` for the events it replays: their age goes to a histogram of its
        own, not to the live latency, and they start no span. A leaderboard goes
        through the socket's pacing (web.boards), replayed or not."""
        if event.data is not None and event.kind == "leaderboard":
            group_id = event.data.get("group_id")
            if replayed:
                self.boards.offer(str(group_id), event.data, event.frame, None)
            else:
                self.boards.offer(
                    str(group_id), event.data, event.frame, event.ingest_ms, event.read_at
                )
            return
        key = ("m", event.session_id) if coalesce and event.kind == "metrics_update" else None
        self.send(
            event.frame,
            event.kind,
            coalesce_key=key,
            ingest_ms=event.ingest_ms,
            replayed=replayed,
            traceparent=None if replayed else event.traceparent,
        )

    async def _write_all(self) -> None:
        try:
            await self._drain()
        finally:
            # No await between the queue found empty and the flag cleared: a frame
            # queued after this starts a new writer (and makes a new queue).
            if self.ws.closed or self.closing:
                self._queue = self._coalesce = None
                self._size = 0
            if not self._queue:
                self._queue = None
            if not self._coalesce:
                self._coalesce = None
            self._writing = False
            self._writer = None
            if self._drained is not None:
                self._drained.set()
                self._drained = None

    async def _drain(self) -> None:
        written = 0
        while self._queue:
            written += 1
            if written % _YIELD_EVERY == 0:
                # A long backlog (a replay) must not hold the loop: other sockets'
                # live events wait meanwhile.
                await asyncio.sleep(0)
                continue
            item = self._queue.popleft()
            item.taken = True
            if not item.alive:
                continue
            self._size -= 1
            coalesce = self._coalesce
            if (
                item.coalesce_key is not None
                and coalesce is not None
                and coalesce.get(item.coalesce_key) is item
            ):
                del coalesce[item.coalesce_key]
            if self.ws.closed:
                return
            span = self._send_span(item) if item.traceparent is not None else None
            try:
                await self.ws.send_str(item.frame)
            except (ConnectionError, RuntimeError):
                if span is not None:
                    span.end()
                return
            if span is not None:
                span.end()
            item.written, item.written_at = True, time.monotonic()
            self.metrics.frame_sent(item.kind)
            if item.group is not None:
                self._board_sent(item, item.group, item.written_at)
            if item.ingest_ms is not None:
                age_s = max(0.0, time.time() - item.ingest_ms / 1000.0)
                if item.replayed:
                    self.metrics.replayed_age.observe(age_s)
                else:
                    self.metrics.latency.observe(age_s)

    def _board_sent(self, item: _Item, group: str, written_at: float) -> None:
        """The edge's evidence of the pacing (the gap since the group's last frame on
        this socket, from write to write) and the edge's hops of a live board."""
        if self._board_written is None:
            self._board_written = {}
        last = self._board_written.get(group)
        self._board_written[group] = written_at
        if last is not None:
            self.metrics.board_written(written_at - last, final=item.final)
        if item.read_at is not None:
            queued_at = max(item.queued_at, item.read_at)  # merged into a queued frame
            self.metrics.board_hop_s("read_to_queued", queued_at - item.read_at)
            self.metrics.board_hop_s("queued_to_written", written_at - queued_at)

    def _send_span(self, item: _Item) -> Any:
        """A span for writing a traced live event to this socket (None if untraced)."""
        tracer = tracing.tracer()
        context = tracing.parent_context(item.traceparent)
        if tracer is None or context is None:
            return None
        return tracer.start_span(
            "ws send",
            context=context,
            kind=SpanKind.PRODUCER,
            attributes={
                "livecoach.event_type": item.kind,
                "livecoach.user_id": str(self.principal.user_id) if self.principal else "",
            },
        )

    def close_soon(self, code: int, message: str) -> None:
        """Close from synchronous code (the fan-out); the handler loop then ends."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self.metrics.closes.labels(str(code)).inc()
        if self._boards is not None:
            self._boards.close()
        self._queue = self._coalesce = None
        self._size = 0
        task = asyncio.ensure_future(self._close_or_abort(code, message))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def close(self, code: int, message: str) -> None:
        if not self.closing:
            self.closing = True
            self.close_code = code
            self.metrics.closes.labels(str(code)).inc()
        await self._close_or_abort(code, message)

    async def finish(self) -> None:
        """The handler's last word: close if still open, and never leave the transport
        stuck with bytes the client will not read."""
        if not self.ws.closed:
            await self._close_or_abort(1000, "")
        self.abort_if_stuck()

    async def _close_or_abort(self, code: int, message: str) -> None:
        """Send the close frame and wait (``close_timeout_s``) for the client's; abort
        the transport if that does not finish, or if written bytes are still stuck
        in it: a client that stopped reading never takes the close frame, and a
        plain close would wait for the kernel to flush to it forever, keeping the
        socket, its task and one of the user's connection slots."""
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            await asyncio.wait_for(
                self.ws.close(code=code, message=message.encode()), self._close_timeout_s
            )
        self.abort_if_stuck()

    def abort_if_stuck(self) -> None:
        """Abort the transport if what was written to it cannot be flushed."""
        if self._transport is not None and _unsent(self._transport):
            self._transport.abort()

    async def flush(self, timeout_s: float = 1.0) -> None:
        """Wait (briefly) until queued frames are written: before a deliberate close."""
        if self.ws.closed or not self._writing:
            return  # nothing waits to be written
        if self._drained is None:
            self._drained = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout_s)

    async def stop(self) -> None:
        if self._boards is not None:
            self._boards.close()
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    # --- routing ----------------------------------------------------------------------

    def wants(self, event: LiveEvent) -> bool:
        """Whether a live event is new to this client on any channel it matched."""
        wanted = False
        member_only = self._member_only
        for name in event.channels:
            sub = self.subscriptions.get(name)
            if sub is None or (
                event.kind == "alert" and member_only is not None and name in member_only
            ):
                continue
            if event.offset > sub.floors.get(event.partition, -1):
                sub.floors[event.partition] = event.offset
                wanted = True
        return wanted

    def deliver(self, event: LiveEvent) -> None:
        if self.parked is not None:
            self.parked.append(event)
        elif self.wants(event):
            self.send_event(event)
