"""Errors as ``application/problem+json`` (RFC 9457), produced in one place.

Handlers raise :class:`Problem` (or let pydantic's ``ValidationError``, the access
errors, the database's refusals and aiohttp's HTTP errors escape); the edge's
middleware (:mod:`web.middleware`) answers every one with :func:`error_response`, a
problem document with field details, through :func:`translate`, the one table from
exception to problem (the WebSocket uses it too, for its ``error`` events). Only a
lost or failing backing service is a 503, and each is logged with its cause; anything
unexpected becomes a bare 500 with no traceback in the body (the traceback goes to the
log).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from pipeline.errors import DataRejected, NotDurable, ServiceError
from pipeline.users import LinkRefused
from web.access import Forbidden, NotFound
from web.actions import Conflict
from web.auth import AuthError
from web.directory import UnknownUser
from web.errors import EdgeError
from web.protocol import CLOSE_FORBIDDEN, CLOSE_INTERNAL, CLOSE_UNAUTHORIZED

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Seconds a client is told to wait (``Retry-After``) after a 503: a backing service
#: failing is usually back within seconds (a restart, a failover).
RETRY_AFTER_S = 2


class BodyTimeout(EdgeError):
    """A request body did not arrive in time (408; the connection is closed)."""


class Problem(EdgeError):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers


def problem_response(problem: Problem, instance: str) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "instance": instance,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if problem.errors:
        body["errors"] = problem.errors
    return web.Response(
        status=problem.status,
        text=json.dumps(body),
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def validation_errors(
    exc: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[dict[str, Any]]:
    """pydantic's errors as ``{"field": "samples[2].heart_rate", "message": ...}``."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ""
        for part in (*prefix, *err["loc"]):
            if isinstance(part, int):
                field += f"[{part}]"
            else:
                field += ("." if field else "") + str(part)
        out.append({"field": field or "body", "message": err["msg"], "code": err["type"]})
    return out


def unprocessable(exc: ValidationError) -> Problem:
    errors = validation_errors(exc)
    first = errors[0] if errors else {"field": "body", "message": "invalid"}
    return Problem(
        422, "Unprocessable Content", f"{first['field']}: {first['message']}", errors=errors
    )


_UNPROCESSABLE = (422, "Unprocessable Content")
_CONFLICT = (409, "Conflict")

#: What PostgreSQL's refusal of a request's data means to the client, by SQLSTATE (then
#: by class: the first two characters). ``None``: psycopg's own refusal of a NUL byte
#: in a text value, before it reaches the server.
DB_PROBLEMS: dict[str | None, tuple[tuple[int, str], str]] = {
    "23505": (_CONFLICT, "already exists"),  # unique_violation
    "23P01": (_CONFLICT, "conflicts with an existing row"),  # exclusion_violation
    "23503": (_UNPROCESSABLE, "refers to something that does not exist"),  # foreign_key
    "23514": (_UNPROCESSABLE, "is not allowed"),  # check_violation
    "23502": (_UNPROCESSABLE, "is required"),  # not_null_violation
    "22P02": (_UNPROCESSABLE, "has the wrong format"),  # invalid_text_representation
    "22003": (_UNPROCESSABLE, "is out of range"),  # numeric_value_out_of_range
    "22001": (_UNPROCESSABLE, "is too long"),  # string_data_right_truncation
    "22P05": (_UNPROCESSABLE, "holds a character that cannot be stored (\\u0000)"),
    "22021": (_UNPROCESSABLE, "is not valid in the database's encoding"),
    "22007": (_UNPROCESSABLE, "is not a valid date or time"),  # invalid_datetime_format
    "22008": (_UNPROCESSABLE, "is out of the date and time range"),  # datetime_field_overflow
    None: (_UNPROCESSABLE, "contains a NUL byte, which text cannot hold"),
    "22": (_UNPROCESSABLE, "is invalid"),  # any other data_exception
    "23": (_CONFLICT, "conflicts with stored data"),  # any other integrity violation
}

_KEY_COLUMNS = re.compile(r"Key \(([^)]*)\)=")


_INT4 = range(-(2**31), 2**31)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a value, JSON documents included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _culprit(state: str | None, name: str, value: Any) -> bool:
    """Whether ``value`` can be what PostgreSQL refused with ``state``."""
    if state is None or state == "22P05":  # a NUL byte (psycopg), \u0000 in JSON (server)
        return any("\x00" in text for text in _strings(value))
    if state == "22003":
        return isinstance(value, int) and not isinstance(value, bool) and value not in _INT4
    if state == "22001":
        return isinstance(value, str)
    return False


def _db_field(exc: DataRejected) -> str:
    """The request field a refusal is about: the column PostgreSQL names (directly, in a
    key, or in a constraint named ``<table>_<column>_<kind>``), else the one of the
    fields the statement wrote whose value fits the error, else the only field."""
    diag = getattr(exc.cause, "diag", None)
    names = list(exc.fields)
    if diag is not None:
        if diag.column_name:
            return str(diag.column_name)
        match = _KEY_COLUMNS.search(diag.message_detail or "")
        if match:
            columns = [c.strip() for c in match.group(1).split(",")]
            hinted = [c for c in columns if c in names]
            return (hinted or columns)[-1]
        constraint, table = diag.constraint_name or "", diag.table_name or ""
        if constraint.startswith(f"{table}_"):
            column = constraint.removeprefix(f"{table}_").rsplit("_", 1)[0]
            if column in names or not names:
                return column
    state = getattr(exc.cause, "sqlstate", None)
    suspects = [n for n, v in exc.fields.items() if _culprit(state, n, v)]
    if state == "22001" and len(suspects) > 1:  # too long: the longest string
        suspects = [max(suspects, key=lambda n: len(exc.fields[n]))]
    if len(suspects) == 1:
        return suspects[0]
    if len(names) == 1:
        return names[0]
    return "body"


def db_problem(exc: DataRejected) -> Problem:
    """The 4xx problem of a request whose data PostgreSQL refused."""
    state = getattr(exc.cause, "sqlstate", None)
    (status, title), what = (
        DB_PROBLEMS.get(state) or DB_PROBLEMS.get((state or "")[:2]) or DB_PROBLEMS["22"]
    )
    field = _db_field(exc)
    message = f"one of {', '.join(exc.fields)} {what}" if field == "body" and exc.fields else what
    return Problem(
        status,
        title,
        f"{field}: {message}",
        errors=[{"field": field, "message": message, "code": f"sqlstate_{state or 'client'}"}],
    )


@dataclass(frozen=True)
class Rule:
    """How one kind of error is answered, over HTTP and on a WebSocket."""

    #: HTTP status and title; None: not an HTTP answer (a WebSocket-only row).
    status: int | None
    title: str
    #: The ``code`` of the WebSocket ``error`` event.
    ws_code: str
    #: The close code that follows the ``error`` event; None: the socket stays open.
    ws_close: int | None = None
    #: The close code when the error happens while a socket authenticates.
    ws_auth_close: int = CLOSE_INTERNAL


_UNAVAILABLE = Rule(503, "Service Unavailable", "unavailable")
_4401, _4403 = CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN

#: The one table from exception to answer, first match (``isinstance``) wins: used by
#: :func:`translate` (HTTP problems) and by ``web.ws`` (``error`` events, close codes).
RULES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Rule], ...] = (
    (ValidationError, Rule(422, "Unprocessable Content", "invalid")),
    (AuthError, Rule(401, "Unauthorized", "unauthorized", _4401, _4401)),
    ((UnknownUser, Forbidden), Rule(403, "Forbidden", "forbidden", _4403, _4403)),
    (NotFound, Rule(404, "Not Found", "not_found")),
    (Conflict, Rule(409, "Conflict", "conflict")),
    (BodyTimeout, Rule(408, "Request Timeout", "timeout")),
    ((DataRejected, LinkRefused), Rule(422, "Unprocessable Content", "invalid")),
    (web.HTTPRequestEntityTooLarge, Rule(413, "Content Too Large", "too_big")),
    ((ServiceError, RedisError), _UNAVAILABLE),
    # On a socket only (a handler's own check, and a lost Redis connection):
    (ValueError, Rule(None, "Invalid", "invalid")),
    (OSError, Rule(None, "Service Unavailable", "unavailable")),
)  # fmt: skip


def rule_for(exc: BaseException) -> Rule | None:
    """The row of :data:`RULES` for ``exc``; None for an unexpected error (a bug)."""
    for kinds, rule in RULES:
        if isinstance(exc, kinds):
            return rule
    return None


def translate(exc: Exception) -> Problem | None:
    """The problem an exception is to the client; None for an unexpected one (500)."""
    if isinstance(exc, Problem):
        return exc
    rule = rule_for(exc)
    if rule is None or rule.status is None:
        if isinstance(exc, web.HTTPException) and exc.status >= 400:
            text = exc.text if exc.text != f"{exc.status}: {exc.reason}" else None
            return Problem(exc.status, exc.reason, text)
        return None
    if isinstance(exc, ValidationError):
        return unprocessable(exc)
    if isinstance(exc, Forbidden | NotFound) and exc.field:
        errors = [{"field": exc.field, "message": str(exc)}]
        return Problem(rule.status, rule.title, str(exc), errors=errors)
    if isinstance(exc, DataRejected):
        return db_problem(exc)
    if isinstance(exc, LinkRefused):
        errors = [{"field": exc.field, "message": str(exc)}]
        return Problem(rule.status, rule.title, f"{exc.field}: {exc}", errors=errors)
    if rule is _UNAVAILABLE:
        # Not replicated in time: say so (the message holds counts and a topic only).
        detail = (
            str(exc) if isinstance(exc, NotDurable) else "a backing service is failing; retry later"
        )
        return Problem(503, rule.title, detail, headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return Problem(rule.status, rule.title, "the request body exceeds the limit")
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    return Problem(rule.status, rule.title, str(exc), headers=headers)


def is_service_failure(exc: BaseException) -> bool:
    """A lost or failing backing service (Redis, PostgreSQL, the issuer's JWKS): 503."""
    return isinstance(exc, ServiceError | RedisError)


def backend_of(exc: BaseException) -> str:
    """The ``backend`` label of a service failure on /metrics."""
    return exc.backend if isinstance(exc, ServiceError) else "redis"


def log_service_failure(exc: BaseException, during: str) -> None:
    """Every 503 is logged once, with its cause."""
    cause = exc.__cause__ or exc.__context__
    log.warning(
        "503 during %s: %s: %s%s",
        during,
        type(exc).__name__,
        exc,
        f" (caused by {type(cause).__name__}: {cause})" if cause is not None else "",
    )


def error_response(
    exc: Exception, request: web.Request, on_service_error: Callable[[Exception], None]
) -> web.Response:
    """The problem answer to what a handler raised (an HTTP error of 4xx/5xx, or any
    other exception): a service failure is counted and logged, anything unexpected is
    logged with its traceback and answered a bare 500."""
    if isinstance(exc, web.HTTPException):
        problem = translate(exc)
        assert problem is not None
        return problem_response(problem, request.path)
    if is_service_failure(exc):
        on_service_error(exc)
        log_service_failure(exc, f"{request.method} {request.path}")
    problem = translate(exc)
    if problem is None:
        log.exception("unhandled error on %s %s", request.method, request.path)
        problem = Problem(500, "Internal Server Error")
    return problem_response(problem, request.path)


def body_deadline(request: web.Request, timeout_s: float) -> asyncio.TimerHandle | None:
    """Give a request's body ``timeout_s`` to arrive, authenticated or not: then the
    handler's read fails with :class:`BodyTimeout` (see :func:`body_timeout_response`).
    aiohttp has no body read timeout of its own; a trickled body was held forever.
    None (no timer to cancel) when there is no body or it has all arrived already, as
    a device's small post has by the time its handler runs."""
    if not request.can_read_body or request.content.is_eof():
        return None
    return asyncio.get_running_loop().call_later(timeout_s, _expire_body, request, timeout_s)


def _expire_body(request: web.Request, timeout_s: float) -> None:
    if not request.content.at_eof():
        request.content.set_exception(
            BodyTimeout(f"the request body did not arrive within {timeout_s:g} s")
        )


async def body_timeout_response(request: web.Request, exc: BodyTimeout) -> web.Response:
    """A 408 written at once, and the connection closed once it is flushed (aiohttp
    would read the rest of the body first)."""
    response = problem_response(Problem(408, "Request Timeout", str(exc)), request.path)
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400/413/415 problem."""
    if request.content_type not in ("application/json", "") and not request.content_type.endswith(
        "+json"
    ):
        raise Problem(
            415, "Unsupported Media Type", f"expected application/json, got {request.content_type}"
        )
    raw = await request.read()
    if not raw:
        raise Problem(400, "Bad Request", "the request body is empty; expected JSON")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "Bad Request", f"malformed JSON: {exc}") from None
    except RecursionError:
        value = None  # deeper than the parser goes: refused below like any too deep
    else:
        if nesting_within(value, MAX_JSON_DEPTH):
            return value
    raise Problem(400, "Bad Request", f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")


#: How deep a request body's JSON may nest. Nothing livecoach accepts goes past 6;
#: deeper bodies only make the validators and the JSONB encoder recurse (a 1,000-deep
#: body was a 500 with a RecursionError).
MAX_JSON_DEPTH = 32


def nesting_within(value: Any, limit: int) -> bool:
    """True if ``value`` (parsed JSON) nests at most ``limit`` containers deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True
