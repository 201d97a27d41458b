"""Errors as ``application/problem+json`` (RFC 9457), produced in one middleware.

Handlers raise :class:`Problem` (or let pydantic's ``ValidationError``, the access
errors and aiohttp's HTTP errors escape); :func:`problem_middleware` turns every one
into a problem document with field details. Anything unexpected becomes a bare 500
with no traceback in the body (the traceback goes to the log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from pipeline.errors import ServiceError
from web.access import Forbidden, NotFound
from web.auth import AuthError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
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


def _translate(exc: Exception) -> Problem | None:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ValidationError):
        return unprocessable(exc)
    if isinstance(exc, AuthError):
        return Problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Forbidden):
        return Problem(403, "Forbidden", str(exc))
    if isinstance(exc, NotFound):
        return Problem(404, "Not Found", str(exc))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return Problem(413, "Content Too Large", "the request body exceeds the limit")
    if isinstance(exc, ServiceError | RedisError):
        return Problem(503, "Service Unavailable", "a backing service is failing; retry later")
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return Problem(
            exc.status, exc.reason, exc.text if exc.text != f"{exc.status}: {exc.reason}" else None
        )
    return None


def make_problem_middleware(on_service_error: Callable[[Exception], None]) -> Any:
    @web.middleware
    async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            problem = _translate(exc)
            assert problem is not None
            return problem_response(problem, request.path)
        except Exception as exc:
            if isinstance(exc, ServiceError | RedisError):
                on_service_error(exc)
            problem = _translate(exc)
            if problem is None:
                log.exception("unhandled error on %s %s", request.method, request.path)
                problem = Problem(500, "Internal Server Error")
            return problem_response(problem, request.path)

    return problem_middleware


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
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "Bad Request", f"malformed JSON: {exc}") from None
