"""The WebSocket endpoint ``/api/v1/live/ws``: auth, the frame loop and its limits.

Life of a socket: upgrade (permessage-deflate offered) -> auth (``Authorization``
header, or a first ``{"type": "auth", "token": ...}`` frame within
``auth_timeout_s``) -> ``welcome`` -> frames until either side closes. One
:func:`heartbeat_loop` per edge pings every socket every ``heartbeat_s``, closes an idle
client with 4408 and an expired token with 4401. Every subscription is removed when
the socket ends, however it ends.

Bad input never closes the socket: malformed JSON, an unknown ``type`` or a missing
field is answered with an ``error`` event. What does close it: a denied channel
(4403), a bad token (4401), too many frames or sockets (4429), a frame over the size
limit (1009, by aiohttp), a send queue overflow (4410).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from typing import Any
from uuid import UUID

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from pipeline.constants import group_channel, user_channel
from pipeline.errors import DataRejected, ServiceError
from pipeline.models import (
    AckAlertFrame,
    AuthFrame,
    ClientMetricsUpdateFrame,
    LapFrame,
    MessageFrame,
    PingFrame,
    ReadFrame,
    ResumeFrame,
    SubscribeFrame,
    TypingFrame,
    UnsubscribeFrame,
    iso_z,
)
from pipeline.users import LinkRefused, UserId
from web.access import Forbidden, NotFound
from web.actions import parse_samples
from web.auth import AuthError, Principal, bearer_token
from web.clock import ClockWindow
from web.connection import Connection, TokenBucket
from web.directory import UnknownUser
from web.edge import EDGE, Edge
from web.inbound import EdgeWebSocket
from web.problems import (
    RETRY_AFTER_S,
    backend_of,
    log_service_failure,
    rule_for,
    translate,
    validation_errors,
)
from web.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
    Channel,
    parse_channel,
    parse_cursor,
)
from web.resume import resume, send_stored_boards, subscribe, unsubscribe

log = logging.getLogger(__name__)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


TOKEN_EXPIRED = "token expired; reconnect with a new one"

#: What authenticating a token may fail with; each closes the socket (see _refuse).
_AUTH_FAILURES = (AuthError, UnknownUser, ServiceError, RedisError)


async def _header_principal(edge: Edge, request: web.Request) -> Principal | Exception | None:
    """The principal of the request's Authorization header, resolved before the upgrade
    so that the socket starts with the authenticated frame limit; the failure instead
    (answered with a close code after the upgrade); None without a header."""
    try:
        token = bearer_token(request.headers.get("Authorization"))
        return None if token is None else await edge.principal(token)
    except _AUTH_FAILURES as exc:
        return exc


class _Socket:
    """The frame loop of one connection."""

    def __init__(self, edge: Edge, ws: web.WebSocketResponse, conn: Connection) -> None:
        self.edge = edge
        self.ws = ws
        self.conn = conn
        self.user_bucket: TokenBucket | None = None

    # --- replies ----------------------------------------------------------------------

    def reply(self, kind: str, frame: BaseModel | None = None, **fields: Any) -> None:
        body: dict[str, Any] = {"type": kind, "timestamp": iso_z(time.time()), **fields}
        ref = getattr(frame, "id", None)
        if ref is not None:
            body["ref"] = ref
        self.conn.send(_dumps(body), kind)

    def error(self, code: str, message: str, *, ref: Any = None, **extra: Any) -> None:
        body: dict[str, Any] = {"type": "error", "code": code, "message": message, **extra}
        if ref is not None:
            body["ref"] = ref
        self.conn.send(_dumps(body), "error")

    # --- auth -------------------------------------------------------------------------

    async def authenticate(self, early: Principal | Exception | None) -> Principal | None:
        """The socket's principal: from the Authorization header (resolved before the
        upgrade, ``early``) or from a first ``auth`` frame; None once refused (closed)."""
        if isinstance(early, Principal):
            return early
        if early is not None:
            await self._refuse(early)
            return None
        try:
            msg = await self.ws.receive(timeout=self.edge.config.auth_timeout_s)
        except TimeoutError:
            await self.conn.close(CLOSE_UNAUTHORIZED, "no auth frame in time")
            return None
        if msg.type == WSMsgType.ERROR:
            return None  # aiohttp closed it (1009 for a frame over the pre-auth limit)
        if msg.type != WSMsgType.TEXT:
            await self.conn.close(CLOSE_UNAUTHORIZED, "expected an auth frame")
            return None
        try:
            frame = AuthFrame.model_validate_json(msg.data)
        except ValidationError:
            await self.conn.close(
                CLOSE_UNAUTHORIZED, "the first frame must be {'type': 'auth', 'token': ...}"
            )
            return None
        try:
            return await self.edge.principal(frame.token)
        except _AUTH_FAILURES as exc:
            await self._refuse(exc)
            return None

    async def _refuse(self, exc: Exception) -> None:
        """Close a socket whose authentication failed, with the close code the table
        (web.problems.RULES) gives: 4401, 4403, or 1011 for a failing service."""
        rule = rule_for(exc)
        code = rule.ws_auth_close if rule is not None else CLOSE_INTERNAL
        if code == CLOSE_INTERNAL:
            self.edge.metrics.backend_errors.labels(backend_of(exc)).inc()
            log_service_failure(exc, "WebSocket auth")
            await self.conn.close(CLOSE_INTERNAL, "a backing service is failing; retry")
        else:
            await self.conn.close(code, str(exc)[:120])

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.edge.config
        principal = self.conn.principal
        assert principal is not None and self.user_bucket is not None
        while not self.ws.closed and not self.conn.closing:
            msg = await self.ws.receive()
            self.conn.last_seen = time.monotonic()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            # Every client frame, control frames included (500,000 PINGs in 7 s went
            # through when only data frames counted), is rate-limited...
            if not self.conn.bucket.take() or not self.user_bucket.take():
                await self.conn.close(CLOSE_RATE_LIMITED, "too many frames; slow down")
                return
            # ...and acted on only while the token is valid (not up to a heartbeat late).
            principal = self.conn.principal or principal
            if time.time() > principal.expires_at + self.edge.settings.jwt_leeway_s:
                await self.conn.close(CLOSE_UNAUTHORIZED, TOKEN_EXPIRED)
                return
            if msg.type == WSMsgType.PING:
                await self.ws.pong(msg.data)
                continue
            if msg.type == WSMsgType.PONG:
                continue
            self.edge.metrics.frames_received.inc()
            if len(msg.data) > cfg.max_frame_bytes:
                await self.conn.close(CLOSE_TOO_BIG, f"frame over {cfg.max_frame_bytes} bytes")
                return
            if msg.type != WSMsgType.TEXT:
                self.error("bad_frame", "only JSON text frames are accepted")
                continue
            await self.handle(msg.data)

    async def handle(self, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            self.error("bad_json", f"malformed JSON: {exc}")
            return
        except RecursionError:
            self.error("bad_json", "malformed JSON: nested too deeply")
            return
        if not isinstance(data, dict):
            self.error("bad_frame", "expected a JSON object")
            return
        kind = data.get("type")
        # Echoed only if the schema's FrameId (a string or an integer): a bool is an int
        # to Python, not to JSON Schema (the fuzzer sent "id": true, got "ref": true).
        raw_id = data.get("id")
        ref = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
        if not isinstance(kind, str):
            self.error("missing_field", "type: field required", ref=ref, field="type")
            return
        handler = _HANDLERS.get(kind)
        if handler is None:
            self.error(
                "unknown_type",
                f"unknown type {kind!r}; expected one of {', '.join(sorted(_HANDLERS))}",
                ref=ref,
            )
            return
        try:
            await handler(self, data)
        except Exception as exc:
            await self._answer_failure(exc, kind, ref)

    async def _answer_failure(self, exc: Exception, kind: str, ref: Any) -> None:
        """Answer a frame whose handler failed, from the one table (web.problems.RULES):
        an ``error`` event, then a close if the row says so. A bug costs one frame,
        not the socket (and never shows a traceback)."""
        rule = rule_for(exc)
        if rule is None:
            log.error("unexpected error handling a %s frame", kind, exc_info=exc)
            self.error("internal", "internal error", ref=ref)
            return
        if rule.ws_code == "unavailable":
            log_service_failure(exc, f"a {kind} frame")
            self.edge.metrics.backend_errors.labels(backend_of(exc)).inc()
            self.error(
                "unavailable",
                "a backing service is failing; retry",
                ref=ref,
                retry_after_s=RETRY_AFTER_S,
            )
            return
        if isinstance(exc, ValidationError):
            errors = validation_errors(exc)
            first = errors[0] if errors else {"field": "?", "message": "invalid"}
            code = "missing_field" if first.get("code") == "missing" else rule.ws_code
            self.error(code, f"{first['field']}: {first['message']}", ref=ref, errors=errors)
        elif isinstance(exc, DataRejected | LinkRefused):
            problem = translate(exc)
            assert problem is not None
            detail = problem.detail or problem.title
            self.error(rule.ws_code, detail, ref=ref, errors=problem.errors)
        else:
            self.error(rule.ws_code, str(exc), ref=ref)
        if rule.ws_close is not None:
            await self.conn.flush()
            await self.conn.close(rule.ws_close, str(exc)[:120])

    # --- presence ---------------------------------------------------------------------

    async def _authorize(self, channel: Channel) -> UUID | None:
        """The athlete a channel follows (for presence; None for a group's), or the
        refusal. A group is for its coach and members (anyone else: as a missing one)."""
        principal = self.conn.principal
        assert principal is not None
        access = self.edge.need_access()
        if channel.kind == "group":
            coach = await self.edge.need_groups().may_subscribe(principal, channel.ident)
            self.conn.set_member_only(channel.name, not coach)
            # A member's socket gets its window of the board, the coach's all of it.
            self.conn.boards.set_window(
                str(channel.ident), None if coach else str(principal.user_id)
            )
            return None
        if channel.kind == "session":
            # Someone else's session answers as one that does not exist (as over REST):
            # a refusal would tell which session ids exist.
            athlete, _ = await access.require_session(principal, channel.ident)
            return athlete
        await access.require_athlete(principal, channel.ident)
        return channel.ident

    async def _watch(self, channel: Channel, athlete: UserId, on: bool) -> None:
        await _watch(self.edge, self.conn, channel, athlete, on)

    async def cleanup(self) -> None:
        for name in list(self.conn.subscriptions):
            unsubscribe(self.edge, self.conn, name)
            athlete = self.conn.watched.pop(name, None)
            if athlete is not None:
                await self._watch(parse_channel(name), athlete, False)


async def _watch(edge: Edge, conn: Connection, channel: Channel, athlete: UserId, on: bool) -> None:
    """Tell the athlete's dashboards (and the coaches') who started or stopped following."""
    principal = conn.principal
    if principal is None or principal.role == "admin":
        return
    # The athlete's own sockets count too: that is "online" on the coach's dashboard.
    presence = edge.need_presence()
    # One member per socket and channel: a socket may follow an athlete on two channels.
    user, role, conn_id = principal.user_id, principal.role, f"{conn.presence_id}/{channel.name}"
    try:
        if on:
            await presence.watch(athlete, user, role, channel.name, conn_id)
        else:
            await presence.unwatch(athlete, user, role, channel.name, conn_id)
    except Exception as exc:  # presence is best effort; the subscription stands
        log.debug("presence update failed: %s", exc)


# --- access changes (web.revocation) ------------------------------------------------------

#: The ``code`` of the ``error`` event a socket gets when a subscription ends because
#: its user may no longer see the channel (a coach link removed, a role changed).
ACCESS_REVOKED = "access_revoked"


async def _revoke(edge: Edge, conn: Connection, name: str, athlete: UserId) -> None:
    unsubscribe(edge, conn, name)
    conn.watched.pop(name, None)
    await _watch(edge, conn, parse_channel(name), athlete, False)
    body = {
        "type": "error",
        "code": ACCESS_REVOKED,
        "message": f"no longer allowed to see athlete {athlete}; unsubscribed from {name}",
        "channel": name,
        "subscribed": False,
        "timestamp": iso_z(time.time()),
    }
    conn.send(_dumps(body), "error")


_GROUP_PREFIX = group_channel("")


def _revoke_group(edge: Edge, conn: Connection, name: str, group_id: UUID) -> None:
    unsubscribe(edge, conn, name)
    conn.boards.forget(str(group_id))
    conn.set_member_only(name, False)
    body = {
        "type": "error",
        "code": ACCESS_REVOKED,
        "message": f"no longer in group {group_id}; unsubscribed from {name}",
        "channel": name,
        "subscribed": False,
        "timestamp": iso_z(time.time()),
    }
    conn.send(_dumps(body), "error")


async def _recheck(edge: Edge, conn: Connection, athlete: UserId | None = None) -> None:
    """End the subscriptions ``conn`` may no longer have (of ``athlete``, or all, groups
    included)."""
    principal = conn.principal
    if principal is None or conn.closing:
        return
    access = edge.need_access()
    for name, watched in list(conn.watched.items()):
        if athlete is not None and watched != athlete:
            continue
        if not await access.can_see_athlete(principal, watched):
            await _revoke(edge, conn, name, watched)
    if athlete is not None:
        return
    for name in [n for n in conn.subscriptions if n.startswith(_GROUP_PREFIX)]:
        group_id = parse_channel(name).ident
        try:
            await edge.need_groups().may_subscribe(principal, group_id)
        except NotFound:
            _revoke_group(edge, conn, name, group_id)


async def _refresh_roles(edge: Edge, conns: list[Connection]) -> None:
    """Give each socket its user's current role (one query); close a removed user's."""
    ids = list({c.principal.user_id for c in conns if c.principal is not None})
    roles = await edge.need_store().roles_of(ids) if ids else {}
    for conn in conns:
        principal = conn.principal
        if principal is None:
            continue
        role = roles.get(principal.user_id)
        if role is None:
            await conn.close(CLOSE_FORBIDDEN, f"user {principal.user_id} was removed")
        elif role != principal.role:
            conn.principal = dataclasses.replace(principal, role=role)


async def apply_access_change(edge: Edge, event: dict[str, Any]) -> None:
    """A link made or removed, a user changed, or a group's member removed (a PostgreSQL
    notification): forget the cached answers, and end the subscriptions of this edge's
    sockets that lost access."""
    op = event.get("op")
    if op == "link":
        edge.need_access().forget_link(event.get("coach_id"), event.get("athlete_id"))
    elif op == "unlink":
        coach, athlete = event.get("coach_id"), event.get("athlete_id")
        edge.need_access().forget_link(coach, athlete)
        for conn in list(edge.connections):
            if conn.principal is not None and conn.principal.user_id == coach:
                await _recheck(edge, conn, athlete)
    elif op == "unmember":
        group_id, athlete = event.get("group_id"), event.get("athlete_id")
        if group_id is None:
            return
        name = group_channel(group_id)
        for conn in list(edge.connections):
            principal = conn.principal
            theirs = principal is not None and principal.user_id == athlete
            if theirs and not conn.closing and name in conn.subscriptions:
                _revoke_group(edge, conn, name, group_id)
    elif op == "user":
        user_id = event.get("user_id")
        edge.need_directory().forget(user_id)
        mine = [c for c in edge.connections if c.principal and c.principal.user_id == user_id]
        await _refresh_roles(edge, mine)
        for conn in mine:
            await _recheck(edge, conn)


async def recheck_all_access(edge: Edge) -> None:
    """After the listener (re)connected: changes may have been missed; check everything."""
    edge.need_access().forget_link(None, None)
    edge.need_directory().forget()
    conns = list(edge.connections)
    await _refresh_roles(edge, conns)
    for conn in conns:  # link answers are cached and shared per (coach, athlete)
        await _recheck(edge, conn)


#: The heartbeat visits the sockets in slices this far apart (seconds), so that a
#: period's pings, expiry checks and presence refreshes are spread over the period: at
#: once, 1,100 sockets blocked the edge's loop for tens of milliseconds every period.
HEARTBEAT_TICK_S = 0.2


async def heartbeat_loop(edge: Edge) -> None:
    """One loop for every socket of the edge (not a task per socket: memory per idle
    connection matters at ten thousand): ping, close the idle (4408) and the expired
    (4401), and refresh the presence of watching coaches. Each socket is visited once a
    period, in one of the period's slices; a socket opened during a period joins the next."""
    cfg = edge.config
    period = min(cfg.heartbeat_s, cfg.idle_timeout_s / 2)
    slices = max(1, int(period / HEARTBEAT_TICK_S))
    closing: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    while True:
        sockets = list(edge.connections)
        for user_id, bucket in list(edge.replay_buckets.items()):
            if bucket.refill() >= bucket.burst:  # full again: as good as a new one
                del edge.replay_buckets[user_id]
        # Each slice at its time from the period's start, not a slice's sleep after the
        # last: on a busy loop every sleep wakes late, and 75 relative sleeps stretched
        # the period from 15 s to 40 s and more, so that sockets went unpinged for
        # longer than idle_timeout_s and were closed as idle (4408) while their clients
        # answered every ping (bench.groups_edge, 500 x 500).
        for i in range(slices):
            await asyncio.sleep(max(0.0, start + (i + 1) * period / slices - time.monotonic()))
            for conn in sockets[i::slices]:
                task = await _heartbeat(edge, conn)
                if task is not None:
                    closing.add(task)
                    task.add_done_callback(closing.discard)
        # The next period starts when this one was due to end, not when its last slice
        # woke up, so lateness never adds up; a loop a period behind starts afresh.
        start = max(start + period, time.monotonic() - period)


async def _heartbeat(edge: Edge, conn: Connection) -> asyncio.Task[None] | None:
    """Visit one socket; the task closing it if it expired or went idle."""
    if conn.closing or conn.ws.closed:
        return None
    principal = conn.principal
    if principal is not None and time.time() > principal.expires_at + edge.settings.jwt_leeway_s:
        return asyncio.ensure_future(conn.close(CLOSE_UNAUTHORIZED, TOKEN_EXPIRED))
    if time.monotonic() - conn.last_seen > edge.config.idle_timeout_s:
        return asyncio.ensure_future(conn.close(CLOSE_IDLE, "idle: no frame or pong"))
    with contextlib.suppress(ConnectionError, RuntimeError):
        await conn.ws.ping()
    if principal is not None and principal.role != "admin" and conn.watched:
        with contextlib.suppress(Exception):  # presence is best effort
            for name, athlete in list(conn.watched.items()):
                await edge.need_presence().refresh(
                    athlete, principal.user_id, principal.role, f"{conn.presence_id}/{name}"
                )
    return None


# --- frame handlers -----------------------------------------------------------------------


async def _on_auth(s: _Socket, data: dict[str, Any]) -> None:
    frame = AuthFrame.model_validate(data)
    principal = await s.edge.principal(frame.token)
    current = s.conn.principal
    assert current is not None
    if principal.user_id != current.user_id:
        raise Forbidden("a refreshed token must be for the same user")
    s.conn.principal = principal
    s.reply("ack", frame, op="auth", expires_at=iso_z(principal.expires_at))


async def _on_ping(s: _Socket, data: dict[str, Any]) -> None:
    s.reply("pong", PingFrame.model_validate(data))


def _channels(frame: SubscribeFrame | UnsubscribeFrame) -> list[Channel]:
    names = list(frame.channels or []) + ([frame.channel] if frame.channel else [])
    if not names:
        raise ValueError("channel: field required (or channels: a list)")
    return [parse_channel(n) for n in names]


async def _on_subscribe(s: _Socket, data: dict[str, Any]) -> None:
    frame = SubscribeFrame.model_validate(data)
    channels = _channels(frame)
    if len(s.conn.subscriptions) + len(channels) > s.edge.config.max_subscriptions:
        raise ValueError(f"at most {s.edge.config.max_subscriptions} subscriptions per socket")
    revision = s.edge.need_access().revision
    athletes = [await s._authorize(c) for c in channels]
    groups: list[Channel] = []
    for channel, athlete in zip(channels, athletes, strict=True):
        new = channel.name not in s.conn.subscriptions
        cursor = subscribe(s.edge, s.conn, channel)
        if new and channel.kind == "group":
            # In the step that registered it: live boards wait for the stored one.
            s.conn.boards.start_snapshot(str(channel.ident))
            groups.append(channel)
        s.reply("ack", frame, op="subscribe", channel=channel.name, cursor=cursor)
        if new and athlete is not None:
            s.conn.watched[channel.name] = athlete
            await s._watch(channel, athlete, True)
    await send_stored_boards(s.edge, s.conn, groups)
    await _recheck_if_changed(s, revision)


async def _recheck_if_changed(s: _Socket, revision: int) -> None:
    """A link changed while this socket's channels were being authorized: the answer
    may be stale and the change's revocation may have run before they were registered."""
    if s.edge.need_access().revision != revision:
        await _recheck(s.edge, s.conn)


async def _on_unsubscribe(s: _Socket, data: dict[str, Any]) -> None:
    frame = UnsubscribeFrame.model_validate(data)
    for channel in _channels(frame):
        removed = unsubscribe(s.edge, s.conn, channel.name)
        if channel.kind == "group":
            s.conn.boards.forget(str(channel.ident))
            s.conn.set_member_only(channel.name, False)
        athlete = s.conn.watched.pop(channel.name, None)
        if athlete is not None:
            await s._watch(channel, athlete, False)
        s.reply(
            "ack",
            frame,
            op="unsubscribe",
            channel=channel.name,
            subscribed=False,
            was_subscribed=removed,
        )


async def _on_resume(s: _Socket, data: dict[str, Any]) -> None:
    frame = ResumeFrame.model_validate(data)
    requests: dict[Channel, dict[int, int]] = {}
    for name, raw in frame.cursors.items():
        channel = parse_channel(name)
        cursors: dict[int, int] = {}
        for text in [raw] if isinstance(raw, str) else raw:
            p, o = parse_cursor(text)
            cursors[p] = max(o, cursors.get(p, -1))
        requests[channel] = cursors
    if len(s.conn.subscriptions) + len(requests) > s.edge.config.max_subscriptions:
        raise ValueError(f"at most {s.edge.config.max_subscriptions} subscriptions per socket")
    revision = s.edge.need_access().revision
    athletes = {c: await s._authorize(c) for c in requests}
    principal = s.conn.principal
    assert principal is not None
    cfg = s.edge.config
    bucket = s.edge.replay_buckets.get(principal.user_id)
    if bucket is None:
        bucket = s.edge.replay_buckets[principal.user_id] = TokenBucket(
            cfg.replay_rate, cfg.replay_burst
        )
    available = bucket.refill()
    if available < 1:
        # Refused, not closed: a close would only bring a reconnect (auth, more
        # resumes) sooner. The client retries after retry_after_s.
        s.error(
            "rate_limited",
            "replayed too much lately; resume later",
            ref=frame.id,
            retry_after_s=round((1 - available) / cfg.replay_rate, 3),
        )
        return
    replay = await resume(s.edge, s.conn, requests, int(min(cfg.max_replay, available)))
    bucket.spend(replay.cost)
    for channel, athlete in athletes.items():
        if athlete is not None and channel.name not in s.conn.watched:
            s.conn.watched[channel.name] = athlete
            await s._watch(channel, athlete, True)
    await _recheck_if_changed(s, revision)


#: A Sample's field -> where the spec's device frame has it (``metrics``, spec units).
_SPEC_FIELDS = {
    "speed_m_s": ("metrics", "pace"),
    "distance_m": ("metrics", "distance"),
    "power_w": ("metrics", "power"),
    "altitude_m": ("metrics", "altitude"),
    "session_id": ("session_id",),
}


def _frame_fields(exc: ValidationError, frame: ClientMetricsUpdateFrame) -> ValidationError:
    """``exc`` of :func:`parse_samples` with fields named as the client sent them:
    ``samples[2].t``, or for the spec's form ``timestamp``, ``metrics.heart_rate``."""
    errors: list[Any] = []
    for err in exc.errors():
        index, *rest = err["loc"]
        loc: tuple[str | int, ...]
        if frame.samples is not None:
            loc = ("samples", index, *rest)
        elif rest and rest[0] == "t":
            loc = ("t" if frame.t is not None else "timestamp", *rest[1:])
        elif rest:
            loc = (*_SPEC_FIELDS.get(str(rest[0]), ("metrics", rest[0])), *rest[1:])
        else:
            loc = ("metrics",)
        errors.append({**err, "loc": loc})
    return ValidationError.from_exception_data(exc.title, errors)


async def _on_metrics_update(s: _Socket, data: dict[str, Any]) -> None:
    frame = ClientMetricsUpdateFrame.model_validate(data)
    principal = s.conn.principal
    assert principal is not None
    try:
        samples = parse_samples(
            frame.session_id, frame.readings(time.time()), ClockWindow.of(s.edge.settings)
        )
    except ValidationError as exc:
        raise _frame_fields(exc, frame) from None
    accepted = await s.edge.need_actions().accept_samples(principal, frame.session_id, samples)
    s.reply(
        "ack",
        frame,
        op="metrics_update",
        session_id=frame.session_id,
        accepted=accepted.accepted,
        partition=accepted.partition,
        samples_offset=accepted.offset,  # the samples topic's, not a live cursor
    )


async def _on_message(s: _Socket, data: dict[str, Any]) -> None:
    frame = MessageFrame.model_validate(data)
    principal = s.conn.principal
    assert principal is not None
    if frame.group_id is not None:
        # The coach's message to everyone in the group.
        row, created = await s.edge.need_groups().post_message(
            principal, frame.group_id, frame.message, frame.client_message_id
        )
        s.reply("ack", frame, op="message", message_id=row.get("id"), created=created)
        return
    assert frame.session_id is not None
    row, created = await s.edge.need_actions().post_message(
        principal, frame.session_id, frame.message, frame.client_message_id, frame.recipient_id
    )
    s.reply("ack", frame, op="message", message_id=row.get("id"), created=created)


async def _on_typing(s: _Socket, data: dict[str, Any]) -> None:
    frame = TypingFrame.model_validate(data)
    principal = s.conn.principal
    assert principal is not None
    channel = Channel("session", frame.session_id)
    athlete = await s._authorize(channel)
    assert athlete is not None  # a session channel's
    await s.edge.need_presence().publish(
        [channel.name, user_channel(athlete)],
        {
            "type": "typing",
            "session_id": frame.session_id,
            "user_id": athlete,
            "sender_id": principal.user_id,
            "role": principal.role,
            "typing": frame.typing,
            "timestamp": iso_z(time.time()),
        },
    )


async def _on_read(s: _Socket, data: dict[str, Any]) -> None:
    frame = ReadFrame.model_validate(data)
    principal = s.conn.principal
    assert principal is not None
    ids = await s.edge.need_actions().mark_read(principal, frame.session_id, frame.up_to_id)
    s.reply("ack", frame, op="read", session_id=frame.session_id, read=ids)


async def _on_ack_alert(s: _Socket, data: dict[str, Any]) -> None:
    frame = AckAlertFrame.model_validate(data)
    principal = s.conn.principal
    assert principal is not None
    row = await s.edge.need_actions().ack_alert(principal, frame.alert_id)
    s.reply(
        "ack",
        frame,
        op="ack_alert",
        alert_id=frame.alert_id,
        acknowledged_at=row.get("acknowledged_at"),
    )


async def _on_lap(s: _Socket, data: dict[str, Any]) -> None:
    frame = LapFrame.model_validate(data)
    principal = s.conn.principal
    assert principal is not None
    out = await s.edge.need_actions().manual_lap(principal, frame.session_id, None)
    s.reply("ack", frame, op="lap", session_id=frame.session_id, at_ms=out["at_ms"])


_HANDLERS = {
    "auth": _on_auth,
    "ping": _on_ping,
    "subscribe": _on_subscribe,
    "unsubscribe": _on_unsubscribe,
    "resume": _on_resume,
    "metrics_update": _on_metrics_update,
    "message": _on_message,
    "typing": _on_typing,
    "read": _on_read,
    "ack_alert": _on_ack_alert,
    "lap": _on_lap,
}


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    edge = request.app[EDGE]
    cfg = edge.config
    early = await _header_principal(edge, request)
    # A message must stay under the limit (aiohttp refuses one of exactly the limit).
    authed_limit = cfg.max_frame_bytes + 1
    ws = EdgeWebSocket(
        compress=True,
        max_msg_size=authed_limit if isinstance(early, Principal) else cfg.auth_frame_bytes + 1,
        autoping=False,
        heartbeat=None,
        timeout=cfg.close_timeout_s,  # how long a close waits for the peer's close frame
    )
    await ws.prepare(request)
    conn = Connection(
        ws,
        edge.metrics,
        max_queue=cfg.max_send_queue,
        coalesce_after=cfg.coalesce_after,
        frame_rate=cfg.frame_rate,
        frame_burst=cfg.frame_burst,
        transport=request.transport,
        close_timeout_s=cfg.close_timeout_s,
    )
    sock = _Socket(edge, ws, conn)
    edge.connections.add(conn)
    edge.metrics.connections.inc()
    counted: UserId | None = None
    try:
        principal = await sock.authenticate(early)
        if principal is None:
            return ws
        ws.raise_limit(authed_limit)
        if edge.per_user.get(principal.user_id, 0) >= cfg.max_connections_per_user:
            await conn.close(CLOSE_RATE_LIMITED, "too many connections for this user")
            return ws
        counted = principal.user_id
        edge.per_user[counted] = edge.per_user.get(counted, 0) + 1
        conn.principal = principal
        bucket = edge.user_buckets.get(counted)
        if bucket is None:
            bucket = edge.user_buckets[counted] = TokenBucket(
                cfg.user_frame_rate, cfg.user_frame_burst
            )
        sock.user_bucket = bucket
        sock.reply(
            "welcome",
            user_id=principal.user_id,
            role=principal.role,
            expires_at=iso_z(principal.expires_at),
            heartbeat_s=cfg.heartbeat_s,
            idle_timeout_s=cfg.idle_timeout_s,
            live_partitions=edge.settings.live_partitions,
            max_frame_bytes=cfg.max_frame_bytes,
        )
        await sock.run()
    finally:
        await sock.cleanup()
        await conn.stop()
        await conn.finish()
        if counted is not None:
            left = edge.per_user.get(counted, 1) - 1
            if left <= 0:
                edge.per_user.pop(counted, None)
                edge.user_buckets.pop(counted, None)
            else:
                edge.per_user[counted] = left
        edge.connections.discard(conn)
        edge.metrics.connections.dec()
    return ws
