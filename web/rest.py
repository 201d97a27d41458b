"""REST under ``/api/v1/live``: one route table, used both to register the handlers and
to generate the OpenAPI document (:mod:`web.openapi`), so the two cannot drift.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import ValidationError

from agents.alerts.config import AlertConfig, apply_update
from pipeline.constants import IDEMPOTENCY_KEY
from pipeline.downsample import lttb
from pipeline.ids import parse_uuid
from pipeline.models import ClientMetricsUpdateFrame, iso_z
from web.actions import Conflict, parse_samples
from web.auth import Principal
from web.clock import ClockWindow
from web.endpoints import (
    PREFIX,
    Endpoint,
    Param,
    RestHandler,
    edge_of,
    json_response,
    principal,
    query_param,
    read_body,
    uuid_path,
)
from web.problems import Problem, read_json, validation_errors
from web.schemas import (
    AlertList,
    AlertOut,
    LapAccepted,
    LifecycleBody,
    MessageList,
    MessageOut,
    MetricsHistory,
    PostMessage,
    ReadBody,
    Roster,
    SamplesAccepted,
    SessionList,
    SessionOut,
    StartSession,
    Thresholds,
    ThresholdsOut,
    UpdateBody,
    Watchers,
)

#: How long an Idempotency-Key (sample upload, session start) is remembered, and held
#: while its request is in progress.
_IDEM_KEEP_S = 24 * 3600
_IDEM_PENDING_S = 60


def _conflict(exc: Conflict) -> Problem:
    return Problem(409, "Conflict", str(exc))


# --- sessions ---------------------------------------------------------------------------


#: What a request under an Idempotency-Key reports once its effect is partly made: the
#: answer it will give (a retry finishes the rest instead of starting over).
Checkpoint = Callable[[str], Awaitable[None]]
_PARTIAL = b"partial:"


async def _idempotent(
    request: web.Request,
    who: Principal,
    scope: str,
    status: int,
    run: Callable[[Checkpoint], Awaitable[str]],
    finish: Callable[[str], Awaitable[None]] | None = None,
) -> web.Response:
    """Answer with ``run()`` (a JSON body) once per ``Idempotency-Key`` of the user and
    ``scope``: a retry of an answered request gets the first answer again (with
    ``Idempotent-Replayed: true``) instead of a second effect, a retry while the first is
    in progress 409, a malformed key 422. Without the header, ``run()`` plainly.

    A request that failed after ``run`` passed its answer to the checkpoint (the
    session's row made, its announcement to the agents not) keeps it: the retry calls
    ``finish`` with it and answers it, instead of making a second effect. A refused or
    failed request that reached no checkpoint frees the key. The key's state and its
    in-progress lock are two Redis keys, so an edge that dies mid-request leaves the
    lock to expire and the state to its retry."""
    idem = request.headers.get("Idempotency-Key")
    if idem is None:
        return web.Response(text=await run(_no_checkpoint), status=status,
                            content_type="application/json")  # fmt: skip
    if not 0 < len(idem) <= 128 or not idem.isprintable():
        message = "1 to 128 printable characters"
        raise Problem(422, "Unprocessable Content", f"Idempotency-Key: {message}",
                      errors=[{"field": "Idempotency-Key", "message": message}])  # fmt: skip
    key = IDEMPOTENCY_KEY.format(user_id=who.user_id, scope=scope, key=idem)
    redis = edge_of(request).need_redis()

    def replay(stored: bytes) -> web.Response:
        return web.Response(
            body=stored, status=status, content_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )  # fmt: skip

    async def state() -> bytes | None:
        value = await redis.get(key)
        return value.encode() if isinstance(value, str) else value

    stored = await state()
    if stored is not None and not stored.startswith(_PARTIAL):
        return replay(stored)
    lock = key + ":lock"
    if not await redis.set(lock, b"1", nx=True, ex=_IDEM_PENDING_S):
        raise Problem(409, "Conflict", "a request with this Idempotency-Key is in progress")
    try:
        stored = await state()  # another request may have finished meanwhile
        if stored is not None and not stored.startswith(_PARTIAL):
            return replay(stored)
        if stored is not None and finish is not None:
            body = stored[len(_PARTIAL) :].decode()
            await finish(body)
        else:

            async def checkpoint(answer: str) -> None:
                await redis.set(key, _PARTIAL + answer.encode(), ex=_IDEM_KEEP_S)

            body = await run(checkpoint)
        await redis.set(key, body.encode(), ex=_IDEM_KEEP_S)
    finally:
        await redis.delete(lock)
    return web.Response(text=body, status=status, content_type="application/json")


async def _no_checkpoint(answer: str) -> None:
    return None


async def start_session(request: web.Request) -> web.Response:
    who = await principal(request)
    body: StartSession = await read_body(request, StartSession, optional=True)
    metadata = dict(body.metadata)
    if body.sport:
        metadata["sport"] = body.sport
    actions = edge_of(request).need_actions()

    async def start(checkpoint: Checkpoint) -> str:
        async def created(row: dict[str, Any]) -> None:
            await checkpoint(SessionOut.model_validate(row).model_dump_json())

        if body.group_id is not None:  # a member joining at the start: checked first
            athlete = body.athlete_id or who.user_id
            await edge_of(request).need_groups().check_start(who, athlete, body.group_id)
        row = await actions.start_session(
            who,
            athlete_id=body.athlete_id,
            coach_id=body.coach_id,
            training_session_id=body.training_session_id,
            metadata=metadata,
            created=created,
            group_id=body.group_id,
        )
        return SessionOut.model_validate(row).model_dump_json()

    async def finish(answer: str) -> None:
        await actions.announce_start(SessionOut.model_validate_json(answer).model_dump())

    # A client that timed out (PostgreSQL slow or away) retries with the same key and
    # gets the session its first request created, not a second one left open; a start
    # whose row was made but whose announcement failed (Redis away, no replica in time)
    # is announced by the retry.
    return await _idempotent(request, who, "start", 201, start, finish)


async def update_session(request: web.Request) -> web.Response:
    who = await principal(request)
    session_id = uuid_path(request, "id")
    raw = await read_json(request)
    if isinstance(raw, list):
        items: list[Any] = raw
    elif isinstance(raw, dict) and "metrics" in raw:
        items = _spec_reading(raw, session_id)
    elif isinstance(raw, dict) and "samples" in raw:
        UpdateBody.model_validate(raw)
        extra = set(raw) - {"samples", "session_id"}
        if extra:
            raise Problem(
                422,
                "Unprocessable Content",
                f"{sorted(extra)[0]}: unexpected beside samples",
                errors=[
                    {"field": k, "message": "unexpected beside samples"} for k in sorted(extra)
                ],
            )
        items = raw["samples"]
    elif isinstance(raw, dict):
        items = [raw]
    else:
        message = 'expected a sample (an object), a list of samples or {"samples": [...]}'
        raise Problem(
            422,
            "Unprocessable Content",
            f"body: {message}",
            errors=[{"field": "body", "message": message}],
        )
    if not items:
        raise Problem(
            422,
            "Unprocessable Content",
            "samples: at least one sample is needed",
            errors=[{"field": "samples", "message": "at least one sample is needed"}],
        )
    if len(items) > 3600:
        raise Problem(
            422,
            "Unprocessable Content",
            "samples: at most 3600 per request",
            errors=[{"field": "samples", "message": "at most 3600 per request"}],
        )
    try:
        samples = parse_samples(session_id, items, ClockWindow.of(edge_of(request).settings))
    except ValidationError as exc:
        errors = validation_errors(
            exc, ("samples",) if len(items) > 1 or isinstance(raw, list) or "samples" in raw else ()
        )
        if not (len(items) > 1 or isinstance(raw, list) or "samples" in raw):
            # a single sample: name its field without the [0] index
            for err in errors:
                err["field"] = err["field"].removeprefix("[0].").removeprefix("[0]") or "body"
        raise Problem(
            422,
            "Unprocessable Content",
            f"{errors[0]['field']}: {errors[0]['message']}",
            errors=errors,
        ) from None

    async def accept(_: Checkpoint) -> str:
        try:
            accepted = (
                await edge_of(request).need_actions().accept_samples(who, session_id, samples)
            )
        except Conflict as exc:
            raise _conflict(exc) from None
        return SamplesAccepted(**accepted.__dict__).model_dump_json()

    # A retry of an acknowledged upload gets the first answer, not a second append.
    return await _idempotent(request, who, str(session_id), 202, accept)


def _spec_reading(raw: dict[str, Any], session_id: UUID) -> list[Any]:
    """The spec's device message (``metrics`` in the spec's units at ``timestamp``, with
    or without its ``type`` and ``session_id``) as one sample dict; 422 naming a field."""
    body = {"type": "metrics_update", "session_id": str(session_id), **raw}
    try:
        frame = ClientMetricsUpdateFrame.model_validate(body)
        if frame.session_id != session_id:
            field, message = "session_id", f"expected this path's session {session_id}"
        else:
            return frame.readings(time.time())
    except ValidationError as exc:
        errors = validation_errors(exc, ())
        field, message = errors[0]["field"], errors[0]["message"]
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
    raise Problem(
        422,
        "Unprocessable Content",
        f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _check_at_ms(request: web.Request, at_ms: int | None) -> None:
    """A device time (``at_ms``) outside the edge's clock window is a 422 naming it."""
    if at_ms is None:
        return
    refusal = ClockWindow.of(edge_of(request).settings).refusal(at_ms / 1000)
    if refusal is not None:
        raise Problem(
            422,
            "Unprocessable Content",
            f"at_ms: {refusal}",
            errors=[{"field": "at_ms", "message": refusal}],
        )


def _lifecycle(action: str) -> RestHandler:
    async def handler(request: web.Request) -> web.Response:
        who = await principal(request)
        session_id = uuid_path(request, "id")
        body: LifecycleBody = await read_body(request, LifecycleBody, optional=True)
        _check_at_ms(request, body.at_ms)
        try:
            row = (
                await edge_of(request)
                .need_actions()
                .lifecycle(who, session_id, action, body.at_ms, reason=body.reason)
            )
        except Conflict as exc:
            raise _conflict(exc) from None
        return json_response(SessionOut.model_validate(row))

    handler.__name__ = f"{action}_session"
    return handler


async def lap_session(request: web.Request) -> web.Response:
    """``POST /sessions/{id}/lap``: a manual lap (the dashboard's Lap button)."""
    who = await principal(request)
    session_id = uuid_path(request, "id")
    body: LifecycleBody = await read_body(request, LifecycleBody, optional=True)
    _check_at_ms(request, body.at_ms)
    try:
        out = await edge_of(request).need_actions().manual_lap(who, session_id, body.at_ms)
    except Conflict as exc:
        raise _conflict(exc) from None
    return json_response(LapAccepted.model_validate(out), status=202)


#: Statuses ``GET /sessions?status=`` accepts.
_STATUSES = ("active", "paused", "completed")


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /sessions?athlete=&status=&before=&limit=``: an athlete's sessions, newest
    first; the caller's own when ``athlete`` is absent. Access as for one session."""
    who = await principal(request)
    athlete = query_param(request, "athlete", parse_uuid, None) or who.user_id
    status = request.query.get("status") or None
    if status is not None and status not in _STATUSES:
        message = f"expected one of {', '.join(_STATUSES)}, got {status[:40]!r}"
        raise Problem(
            422,
            "Unprocessable Content",
            f"status: {message}",
            errors=[{"field": "status", "message": message}],
        )
    before = query_param(request, "before", _time, None)
    limit = max(1, min(query_param(request, "limit", int, 50), 500))
    edge = edge_of(request)
    await edge.need_access().require_athlete(who, athlete)
    rows = await edge.need_store().sessions_of(athlete, status=status, before=before, limit=limit)
    next_before = rows[-1]["started_at"] if len(rows) == limit else None
    return json_response(SessionList(sessions=rows, next_before=next_before))


async def get_session(request: web.Request) -> web.Response:
    who = await principal(request)
    session_id = uuid_path(request, "id")
    edge = edge_of(request)
    await edge.need_access().require_session(who, session_id)
    row = await edge.need_store().get_session(session_id)
    if row is None:
        raise Problem(404, "Not Found", f"no live session {session_id}")
    return json_response(SessionOut.model_validate(row))


def _time(text: str) -> dt.datetime:
    """Epoch seconds or ISO 8601 (without a zone: UTC)."""
    try:
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    except ValueError:
        value = dt.datetime.fromisoformat(text)
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


async def session_metrics(request: web.Request) -> web.Response:
    who = await principal(request)
    session_id = uuid_path(request, "id")
    edge = edge_of(request)
    await edge.need_access().require_session(who, session_id)
    metric = request.query.get("metric")
    bucket_s = query_param(request, "bucket_s", float, None)
    if bucket_s is not None and not 0.1 <= bucket_s <= 86_400:
        raise Problem(
            422,
            "Unprocessable Content",
            "bucket_s: expected 0.1 to 86400",
            errors=[{"field": "bucket_s", "message": "expected 0.1 to 86400"}],
        )
    max_points = query_param(request, "max_points", int, 500)
    if not 1 <= max_points <= 10_000:
        raise Problem(
            422,
            "Unprocessable Content",
            "max_points: expected 1 to 10000",
            errors=[{"field": "max_points", "message": "expected 1 to 10000"}],
        )
    points = query_param(request, "points", int, None)
    if points is not None and not 3 <= points <= 10_000:
        raise Problem(
            422,
            "Unprocessable Content",
            "points: expected 3 to 10000",
            errors=[{"field": "points", "message": "expected 3 to 10000"}],
        )
    metric_types = metric.split(",") if metric else None
    since = query_param(request, "from", _time, None)
    until = query_param(request, "to", _time, None)
    if points is not None:
        series = await edge.need_store().metrics_series(
            session_id, metric_types=metric_types, since=since, until=until
        )
        kept = [
            {"metric_type": name, "bucket": iso_z(xs[i]), "avg": ys[i], "min": ys[i],
             "max": ys[i], "n": 1}
            for name, (xs, ys) in series.items()
            for i in lttb(xs, ys, points)
        ]  # fmt: skip
        return json_response(MetricsHistory(
            session_id=session_id, bucket_s=None, downsampling="lttb", points=kept
        ))  # fmt: skip
    bucket, rows = await edge.need_store().metrics_history(
        session_id,
        metric_types=metric_types,
        since=since,
        until=until,
        bucket_s=bucket_s,
        max_points=max_points,
    )
    return json_response(MetricsHistory(session_id=session_id, bucket_s=bucket, points=rows))


async def session_alerts(request: web.Request) -> web.Response:
    who = await principal(request)
    session_id = uuid_path(request, "id")
    edge = edge_of(request)
    await edge.need_access().require_session(who, session_id)
    limit = query_param(request, "limit", int, 100)
    unacked = request.query.get("unacknowledged", "").lower() in ("1", "true", "yes")
    rows = await edge.need_store().alerts(
        session_id, unacknowledged=unacked, limit=max(1, min(limit, 1000))
    )
    return json_response(AlertList(alerts=rows))


async def session_presence(request: web.Request) -> web.Response:
    who = await principal(request)
    session_id = uuid_path(request, "id")
    edge = edge_of(request)
    athlete_id, _ = await edge.need_access().require_session(who, session_id)
    watchers = await edge.need_presence().watchers(athlete_id)
    return json_response(Watchers(athlete_id=athlete_id, watchers=watchers))


async def ack_alert(request: web.Request) -> web.Response:
    who = await principal(request)
    alert_id = uuid_path(request, "alert_id")
    row = await edge_of(request).need_actions().ack_alert(who, alert_id)
    return json_response(AlertOut.model_validate(row))


# --- people -----------------------------------------------------------------------------


async def get_roster(request: web.Request) -> web.Response:
    """``GET /roster``: the caller (with the name livecoach has) and the people linked
    to them: a coach's athletes (the dashboard's grid), an athlete's coaches."""
    who = await principal(request)
    store = edge_of(request).need_store()
    user = await store.get_user(who.user_id)
    me = {"id": who.user_id, "name": (user or {}).get("name") or "", "role": who.role}
    people = [] if who.role == "admin" else await store.linked_people(who.user_id, who.role)
    if who.role == "coach":
        return json_response(Roster.model_validate({"me": me, "athletes": people, "coaches": []}))
    athletes = [me] if who.role == "athlete" else []
    return json_response(Roster.model_validate({"me": me, "athletes": athletes, "coaches": people}))


# --- thresholds -------------------------------------------------------------------------

_PROFILE_COLUMNS = (
    "hr_max",
    "hr_rest",
    "lthr",
    "ftp_w",
    "w_prime_j",
    "threshold_pace_s_per_km",
    "weight_kg",
    "sex",
    "sound",
    "vibration",
)


async def get_thresholds(request: web.Request) -> web.Response:
    who = await principal(request)
    athlete_id = uuid_path(request, "id")
    edge = edge_of(request)
    await edge.need_access().require_athlete(who, athlete_id)
    row = await edge.need_store().get_profile(athlete_id)
    if row is None:
        out = ThresholdsOut(user_id=athlete_id, alert_settings=AlertConfig().to_jsonb())
    else:
        row["alert_settings"] = AlertConfig.from_jsonb(row.get("alert_settings") or None).to_jsonb()
        out = ThresholdsOut.model_validate(row)
    return json_response(out)


async def put_thresholds(request: web.Request) -> web.Response:
    who = await principal(request)
    athlete_id = uuid_path(request, "id")
    edge = edge_of(request)
    await edge.need_access().require_athlete(who, athlete_id)
    body: Thresholds = await read_body(request, Thresholds)
    store = edge.need_store()
    current = await store.get_profile(athlete_id)
    fields: dict[str, Any] = {
        c: getattr(body, c) for c in _PROFILE_COLUMNS if getattr(body, c) is not None
    }
    # hr_rest < hr_max must hold against the stored value of the one not given.
    hr_max = fields.get("hr_max", (current or {}).get("hr_max"))
    hr_rest = fields.get("hr_rest", (current or {}).get("hr_rest"))
    if hr_max is not None and hr_rest is not None and hr_rest >= hr_max:
        field_name = "hr_rest" if "hr_rest" in fields else "hr_max"
        raise Problem(
            422,
            "Unprocessable Content",
            f"{field_name}: hr_rest ({hr_rest}) must be below hr_max ({hr_max})",
            errors=[
                {
                    "field": field_name,
                    "message": f"hr_rest ({hr_rest}) must be below hr_max ({hr_max})",
                }
            ],
        )
    if body.alert_settings is not None:
        stored = AlertConfig.from_jsonb((current or {}).get("alert_settings") or None)
        try:
            config = apply_update(stored, body.alert_settings)
        except ValidationError as exc:
            errors = validation_errors(exc, ("alert_settings",))
            raise Problem(
                422,
                "Unprocessable Content",
                f"{errors[0]['field']}: {errors[0]['message']}",
                errors=errors,
            ) from None
        fields["alert_settings"] = config.to_jsonb()
    row = await store.put_profile(athlete_id, fields)
    row["alert_settings"] = AlertConfig.from_jsonb(row.get("alert_settings") or None).to_jsonb()
    await edge.need_actions().control_profile(athlete_id, row)
    return json_response(ThresholdsOut.model_validate(row))


# --- chat -------------------------------------------------------------------------------


async def post_message(request: web.Request) -> web.Response:
    who = await principal(request)
    body: PostMessage = await read_body(request, PostMessage)
    row, created = (
        await edge_of(request)
        .need_actions()
        .post_message(who, body.session_id, body.message, body.client_message_id, body.recipient_id)
    )
    return json_response(MessageOut.model_validate(row), status=201 if created else 200)


async def list_messages(request: web.Request) -> web.Response:
    who = await principal(request)
    session_id = uuid_path(request, "session_id")
    edge = edge_of(request)
    await edge.need_access().require_session(who, session_id)
    limit = max(1, min(query_param(request, "limit", int, 50), 500))
    before = query_param(request, "before_id", parse_uuid, None)
    rows = await edge.need_store().messages(session_id, before_id=before, limit=limit)
    return json_response(MessageList(messages=rows))


async def read_messages(request: web.Request) -> web.Response:
    who = await principal(request)
    session_id = uuid_path(request, "session_id")
    body: ReadBody = await read_body(request, ReadBody)
    ids = await edge_of(request).need_actions().mark_read(who, session_id, body.up_to_id)
    return web.json_response({"session_id": str(session_id), "read": [str(i) for i in ids]})


_UUID = {"type": "string", "format": "uuid"}
_ID = Param("id", "path", _UUID, "live session id", True)
_SID = Param("session_id", "path", _UUID, "live session id", True)
_AID = Param("id", "path", _UUID, "athlete (user) id", True)
_IDEM_KEY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 128},
    "a retry with the same key gets the first answer (Idempotent-Replayed: true) instead "
    "of a second effect; 409 while the first is in progress",
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/sessions/start",
        start_session,
        "Start a live session",
        201,
        StartSession,
        SessionOut,
        (_IDEM_KEY,),
        (400, 401, 403, 404, 409, 413, 422),
    ),
    Endpoint(
        "POST",
        "/sessions/{id}/update",
        update_session,
        "Post one sample or a batch; 202 once they are in the stream",
        202,
        UpdateBody,
        SamplesAccepted,
        (
            _ID,
            _IDEM_KEY,
        ),
        (400, 401, 403, 404, 409, 413, 422),
    ),
    Endpoint(
        "POST",
        "/sessions/{id}/pause",
        _lifecycle("pause"),
        "Pause a session",
        200,
        LifecycleBody,
        SessionOut,
        (_ID,),
        (401, 403, 404, 409, 422),
    ),
    Endpoint(
        "POST",
        "/sessions/{id}/resume",
        _lifecycle("resume"),
        "Resume a paused session",
        200,
        LifecycleBody,
        SessionOut,
        (_ID,),
        (401, 403, 404, 409, 422),
    ),
    Endpoint(
        "POST",
        "/sessions/{id}/stop",
        _lifecycle("stop"),
        "Stop a session",
        200,
        LifecycleBody,
        SessionOut,
        (_ID,),
        (401, 403, 404, 409, 422),
    ),
    Endpoint(
        "POST",
        "/sessions/{id}/lap",
        lap_session,
        "Close the current lap now (manual lap); the lap arrives as a session_event",
        202,
        LifecycleBody,
        LapAccepted,
        (_ID,),
        (401, 403, 404, 409, 422),
    ),
    Endpoint(
        "GET",
        "/sessions",
        list_sessions,
        "An athlete's sessions, newest first",
        200,
        None,
        SessionList,
        (
            Param("athlete", "query", _UUID, "athlete (user) id; the caller when absent"),
            Param("status", "query", {"type": "string", "enum": list(_STATUSES)}),
            Param("before", "query", {"type": "string"}, "started before (ISO 8601): paging"),
            Param("limit", "query", {"type": "integer"}, "at most 500 (50)"),
        ),
        (401, 403, 422),
    ),
    Endpoint(
        "GET",
        "/sessions/{id}",
        get_session,
        "A live session",
        200,
        None,
        SessionOut,
        (_ID,),
        (401, 403, 404, 422),
    ),
    Endpoint(
        "GET",
        "/sessions/{id}/metrics",
        session_metrics,
        "Metrics history, downsampled into buckets (or by LTTB with points)",
        200,
        None,
        MetricsHistory,
        (
            _ID,
            Param("metric", "query", {"type": "string"}, "comma-separated metric types"),
            Param("from", "query", {"type": "string"}, "epoch seconds or ISO 8601"),
            Param("to", "query", {"type": "string"}, "epoch seconds or ISO 8601"),
            Param("bucket_s", "query", {"type": "number"}, "bucket width in seconds"),
            Param("max_points", "query", {"type": "integer"}, "buckets per metric (500)"),
            Param("points", "query", {"type": "integer"}, "LTTB: samples kept per metric"),
        ),
        (401, 403, 404, 422),
    ),
    Endpoint(
        "GET",
        "/sessions/{id}/alerts",
        session_alerts,
        "Alert history of a session",
        200,
        None,
        AlertList,
        (
            _ID,
            Param("limit", "query", {"type": "integer"}),
            Param("unacknowledged", "query", {"type": "boolean"}),
        ),
        (401, 403, 404, 422),
    ),
    Endpoint(
        "GET",
        "/sessions/{id}/presence",
        session_presence,
        "Who is watching the session's athlete",
        200,
        None,
        Watchers,
        (_ID,),
        (401, 403, 404, 422),
    ),
    Endpoint(
        "POST",
        "/alerts/{alert_id}/ack",
        ack_alert,
        "Acknowledge an alert",
        200,
        None,
        AlertOut,
        (Param("alert_id", "path", _UUID, "alert id", True),),
        (401, 403, 404, 422),
    ),
    Endpoint(
        "GET",
        "/roster",
        get_roster,
        "The caller and the people linked to them (a coach's athletes, an athlete's coaches)",
        200,
        None,
        Roster,
        (),
        (401,),
    ),
    Endpoint(
        "GET",
        "/athletes/{id}/thresholds",
        get_thresholds,
        "An athlete's thresholds, alert rules and delivery preferences",
        200,
        None,
        ThresholdsOut,
        (_AID,),
        (401, 403, 422),
    ),
    Endpoint(
        "PUT",
        "/athletes/{id}/thresholds",
        put_thresholds,
        "Change thresholds, alert rules (partial) and delivery preferences",
        200,
        Thresholds,
        ThresholdsOut,
        (_AID,),
        (400, 401, 403, 413, 422),
    ),
    Endpoint(
        "POST",
        "/messages",
        post_message,
        "Send a chat message (persisted, then live)",
        201,
        PostMessage,
        MessageOut,
        (),
        (400, 401, 403, 404, 413, 422),
    ),
    Endpoint(
        "GET",
        "/messages/{session_id}",
        list_messages,
        "Chat history of a session",
        200,
        None,
        MessageList,
        (
            _SID,
            Param("before_id", "query", _UUID, "messages stored before this one"),
            Param("limit", "query", {"type": "integer"}),
        ),
        (401, 403, 404, 422),
    ),
    Endpoint(
        "POST",
        "/messages/{session_id}/read",
        read_messages,
        "Mark messages read up to an id (read receipt)",
        200,
        ReadBody,
        None,
        (_SID,),
        (400, 401, 403, 404, 422),
    ),
)


def add_routes(app: web.Application) -> None:
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, PREFIX + ep.path, ep.handler)


__all__ = ["ENDPOINTS", "add_routes"]
