"""The admin surface under ``/api/v1/live/admin``: users and coach-athlete links.

Only a user whose ``users.role`` is ``admin`` may call it (a token's claims cannot make
an admin; the first one is made with ``livecoach users add --role admin``). The SQL is
:mod:`pipeline.users`, shared with the CLI. Removing a link fires migration 0004's
trigger, which tells every edge (:mod:`web.revocation`) to end that coach's
subscriptions to the athlete.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from pipeline.users import USER_ID_SCHEMA, Role, UserId, UserIdIn, parse_user_id
from web.access import Forbidden, NotFound
from web.auth import Principal
from web.edge import EDGE
from web.endpoints import (
    PREFIX,
    Endpoint,
    Param,
    json_response,
    path_param,
    principal,
    query_param,
    read_body,
)
from web.problems import Problem

_STRICT = ConfigDict(extra="forbid")


class NewUser(BaseModel):
    model_config = _STRICT

    id: UserIdIn
    role: Role
    name: str = Field(default="", max_length=255)
    email: str | None = Field(default=None, max_length=255)


class UserOut(BaseModel):
    id: UserId
    role: str
    name: str
    email: str | None
    created_at: str


class UserList(BaseModel):
    users: list[UserOut]
    #: Pass as ``after`` for the next page; null on the last page.
    next_after: UserId | None


class NewLink(BaseModel):
    model_config = _STRICT

    coach_id: UserIdIn
    athlete_id: UserIdIn


class LinkOut(BaseModel):
    coach_id: UserId
    athlete_id: UserId
    created_at: str


class LinkList(BaseModel):
    links: list[LinkOut]


async def _admin(request: web.Request) -> Principal:
    who = await principal(request)
    if not who.is_admin:
        raise Forbidden(f"user {who.user_id} is not an admin")
    return who


def _id_param(request: web.Request, name: str) -> UserId:
    return path_param(request, name, parse_user_id)


def _id_query(request: web.Request, name: str) -> UserId | None:
    return query_param(request, name, parse_user_id, None)  # type: ignore[no-any-return]


async def create_user(request: web.Request) -> web.Response:
    await _admin(request)
    body: NewUser = await read_body(request, NewUser)
    row, created = (
        await request.app[EDGE]
        .need_store()
        .add_user(body.id, role=body.role, name=body.name, email=body.email)
    )
    return json_response(UserOut.model_validate(row), status=201 if created else 200)


async def list_users(request: web.Request) -> web.Response:
    await _admin(request)
    role = request.query.get("role") or None
    if role is not None and role not in ("athlete", "coach", "admin"):
        raise Problem(
            422,
            "Unprocessable Content",
            "role: expected athlete, coach or admin",
            errors=[{"field": "role", "message": "expected athlete, coach or admin"}],
        )
    limit = query_param(request, "limit", int, 100)
    if not 1 <= limit <= 1000:
        raise Problem(
            422,
            "Unprocessable Content",
            "limit: expected 1 to 1000",
            errors=[{"field": "limit", "message": "expected 1 to 1000"}],
        )
    rows = (
        await request.app[EDGE]
        .need_store()
        .list_users(
            role=role,  # type: ignore[arg-type]
            after=_id_query(request, "after"),
            limit=limit,
        )
    )
    next_after = rows[-1]["id"] if len(rows) == limit else None
    return json_response(
        UserList(users=[UserOut.model_validate(r) for r in rows], next_after=next_after)
    )


async def get_user(request: web.Request) -> web.Response:
    await _admin(request)
    user_id = _id_param(request, "user_id")
    row = await request.app[EDGE].need_store().get_user(user_id)
    if row is None:
        raise NotFound(f"no user {user_id}")
    return json_response(UserOut.model_validate(row))


async def create_link(request: web.Request) -> web.Response:
    await _admin(request)
    body: NewLink = await read_body(request, NewLink)
    edge = request.app[EDGE]
    row, created = await edge.need_store().link(body.coach_id, body.athlete_id)
    # Other edges hear of it from PostgreSQL; this one knows now (a "not linked" it may
    # have cached must not outlive the 201).
    edge.need_access().forget_link(body.coach_id, body.athlete_id)
    return json_response(LinkOut.model_validate(row), status=201 if created else 200)


async def delete_link(request: web.Request) -> web.Response:
    await _admin(request)
    coach_id = _id_param(request, "coach_id")
    athlete_id = _id_param(request, "athlete_id")
    if not await request.app[EDGE].need_store().unlink(coach_id, athlete_id):
        raise NotFound(f"coach {coach_id} is not linked to athlete {athlete_id}")
    return web.Response(status=204)


async def list_links(request: web.Request) -> web.Response:
    await _admin(request)
    rows = (
        await request.app[EDGE]
        .need_store()
        .list_links(coach_id=_id_query(request, "coach"), athlete_id=_id_query(request, "athlete"))
    )
    return json_response(LinkList(links=[LinkOut.model_validate(r) for r in rows]))


_UID_SCHEMA = USER_ID_SCHEMA
_ADMIN_ERRORS = (401, 403, 422)

ADMIN_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST", "/admin/users", create_user,
        "Add a user, or change an existing user's role and name (admin)",
        201, NewUser, UserOut, (), (400, 401, 403, 409, 413, 422),
    ),
    Endpoint(
        "GET", "/admin/users", list_users, "Users by id, a page at a time (admin)",
        200, None, UserList,
        (
            Param("role", "query", {"type": "string", "enum": ["athlete", "coach", "admin"]}),
            Param("after", "query", _UID_SCHEMA, "the next_after of the previous page"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        _ADMIN_ERRORS,
    ),
    Endpoint(
        "GET", "/admin/users/{user_id}", get_user, "A user (admin)", 200, None, UserOut,
        (Param("user_id", "path", _UID_SCHEMA, "user id", True),), (401, 403, 404, 422),
    ),
    Endpoint(
        "POST", "/admin/links", create_link,
        "Link a coach to an athlete; linking twice answers 200 (admin)",
        201, NewLink, LinkOut, (), (400, 401, 403, 413, 422),
    ),
    Endpoint(
        "GET", "/admin/links", list_links, "Coach-athlete links (admin)", 200, None, LinkList,
        (
            Param("coach", "query", _UID_SCHEMA, "only this coach's links"),
            Param("athlete", "query", _UID_SCHEMA, "only this athlete's links"),
        ),
        _ADMIN_ERRORS,
    ),
    Endpoint(
        "DELETE", "/admin/links/{coach_id}/{athlete_id}", delete_link,
        "Remove a link; the coach's open subscriptions to the athlete end on every edge"
        " within a second (error event, code access_revoked) (admin)",
        204, None, None,
        (
            Param("coach_id", "path", _UID_SCHEMA, "coach id", True),
            Param("athlete_id", "path", _UID_SCHEMA, "athlete id", True),
        ),
        (401, 403, 404, 422),
    ),
)  # fmt: skip


def add_admin_routes(app: web.Application) -> None:
    for ep in ADMIN_ENDPOINTS:
        app.router.add_route(ep.method, PREFIX + ep.path, ep.handler)
