"""What every REST route module shares: the prefix, the route table's types, and the
request helpers that read a principal, path, query and body (each failure a problem
naming the field). :mod:`web.rest` and :mod:`web.admin` build their tables on it,
:mod:`web.openapi` documents them, :mod:`web.app` registers them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from pipeline.ids import parse_uuid
from web.auth import AuthError, Principal, bearer_token
from web.edge import EDGE, Edge
from web.problems import Problem, read_json

T = TypeVar("T")

__all__ = [
    "OPENAPI_PATH", "PREFIX", "Endpoint", "Param", "RestHandler", "edge_of", "json_response",
    "principal", "query_param", "read_body", "uuid_path",
]  # fmt: skip

PREFIX = "/api/v1/live"
OPENAPI_PATH = "/api/v1/openapi.json"
RestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path", "query" or "header"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # relative to PREFIX
    handler: RestHandler
    summary: str
    status: int = 200
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    params: tuple[Param, ...] = field(default_factory=tuple)
    errors: tuple[int, ...] = (400, 401, 403, 404, 422)


def edge_of(request: web.Request) -> Edge:
    return request.app[EDGE]


async def principal(request: web.Request) -> Principal:
    """Who the request acts for: its bearer token verified, the role from the database."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise AuthError("missing 'Authorization: Bearer <token>'")
    edge = edge_of(request)
    return edge.known_principal(token) or await edge.principal(token)


def path_param(request: web.Request, name: str, parse: Callable[[str], T]) -> T:
    """The path segment ``name`` parsed by ``parse``; a 422 naming it if that fails."""
    raw = request.match_info[name]
    try:
        return parse(raw)
    except ValueError as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            f"{name}: {exc}",
            errors=[{"field": name, "message": str(exc)}],
        ) from None


def uuid_path(request: web.Request, name: str) -> UUID:
    return path_param(request, name, lambda raw: parse_uuid(raw, name))


def query_param(request: web.Request, name: str, kind: Callable[[str], Any], default: Any) -> Any:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(raw)  # inf, nan, 1e309: no time or count is that
        return value
    except (ValueError, TypeError, OverflowError):
        raise Problem(
            422,
            "Unprocessable Content",
            f"{name}: cannot read {raw!r}",
            errors=[{"field": name, "message": f"cannot read {raw!r}"}],
        ) from None


async def read_body(request: web.Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    if optional and not request.can_read_body:
        return model.model_validate({})
    return model.model_validate(await read_json(request))


def json_response(model: BaseModel | dict[str, Any], status: int = 200) -> web.Response:
    if isinstance(model, BaseModel):
        return web.Response(
            text=model.model_dump_json(), status=status, content_type="application/json"
        )
    return web.json_response(model, status=status)
