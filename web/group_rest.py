"""REST of group sessions under ``/api/v1/live/groups`` (docs/groups.md): one route
table, registered by :mod:`web.app` and documented by :mod:`web.openapi`.

What each endpoint does is :class:`web.groups.GroupActions`'; a group the caller may not
see (neither its coach nor a member) is answered as a missing one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pipeline.ids import parse_uuid
from web.endpoints import (
    PREFIX,
    Endpoint,
    Param,
    edge_of,
    json_response,
    principal,
    query_param,
    read_body,
    uuid_path,
)
from web.groups import GroupActions
from web.schemas import (
    AddMember,
    GroupList,
    GroupMember,
    GroupMessageBody,
    GroupMessageList,
    GroupMessageOut,
    GroupOut,
    JoinGroup,
    NewGroup,
)


def _groups(request: web.Request) -> GroupActions:
    return edge_of(request).need_groups()


async def create_group(request: web.Request) -> web.Response:
    who = await principal(request)
    body: NewGroup = await read_body(request, NewGroup)
    row = await _groups(request).create(who, body.model_dump())
    return json_response(GroupOut.model_validate({**row, "members": []}), status=201)


async def get_group(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    groups = _groups(request)
    row: dict[str, Any] = dict(await groups.visible(who, group_id))
    row["members"] = await groups.store.group_members(group_id)
    if row["status"] == "finished":
        row["standings"] = await groups.store.group_standings(group_id)
    return json_response(GroupOut.model_validate(row))


async def list_groups(request: web.Request) -> web.Response:
    who = await principal(request)
    limit = max(1, min(query_param(request, "limit", int, 50), 500))
    rows = await _groups(request).store.groups_of(who.user_id, who.role, limit=limit)
    return json_response(GroupList(groups=[GroupOut.model_validate(r) for r in rows]))


async def add_member(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    body: AddMember = await read_body(request, AddMember)
    groups = _groups(request)
    _, created = await groups.add_member(who, group_id, body.athlete_id)
    members = {m["athlete_id"]: m for m in await groups.store.group_members(group_id)}
    return json_response(
        GroupMember.model_validate(members[body.athlete_id]), status=201 if created else 200
    )


async def remove_member(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    athlete_id = uuid_path(request, "athlete_id")
    await _groups(request).remove_member(who, group_id, athlete_id)
    return web.Response(status=204)


async def join_group(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    body: JoinGroup = await read_body(request, JoinGroup)
    groups = _groups(request)
    await groups.join(who, group_id, body.session_id)
    return await _member_answer(groups, group_id, who.user_id)


async def leave_group(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    groups = _groups(request)
    await groups.leave(who, group_id)
    return await _member_answer(groups, group_id, who.user_id)


async def _member_answer(groups: GroupActions, group_id: Any, athlete_id: Any) -> web.Response:
    members = {m["athlete_id"]: m for m in await groups.store.group_members(group_id)}
    return json_response(GroupMember.model_validate(members[athlete_id]))


async def finish_group(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    row = await _groups(request).finish(who, group_id)
    return json_response(GroupOut.model_validate(row))


async def post_group_message(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    body: GroupMessageBody = await read_body(request, GroupMessageBody)
    row, created = await _groups(request).post_message(
        who, group_id, body.message, body.client_message_id
    )
    return json_response(GroupMessageOut.model_validate(row), status=201 if created else 200)


async def list_group_messages(request: web.Request) -> web.Response:
    who = await principal(request)
    group_id = uuid_path(request, "id")
    groups = _groups(request)
    await groups.visible(who, group_id)
    limit = max(1, min(query_param(request, "limit", int, 50), 500))
    before = query_param(request, "before_id", parse_uuid, None)
    rows = await groups.store.group_messages(group_id, before_id=before, limit=limit)
    return json_response(GroupMessageList(messages=rows))


_UUID = {"type": "string", "format": "uuid"}
_GID = Param("id", "path", _UUID, "group id", True)
_LIMIT = Param("limit", "query", {"type": "integer"}, "at most 500 (50)")

GROUP_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/groups", create_group, "Create a group (a coach's class or race)",
             201, NewGroup, GroupOut, (), (400, 401, 403, 413, 422)),
    Endpoint("GET", "/groups", list_groups,
             "The caller's groups: a coach's own, the ones an athlete is a member of",
             200, None, GroupList, (_LIMIT,), (401, 422)),
    Endpoint("GET", "/groups/{id}", get_group,
             "A group, with its members and names (and final standings once finished)",
             200, None, GroupOut, (_GID,), (401, 404, 422)),
    Endpoint("POST", "/groups/{id}/members", add_member,
             "Invite an athlete linked to the coach (201; 200 if already a member)",
             201, AddMember, GroupMember, (_GID,), (400, 401, 403, 404, 409, 422)),
    Endpoint("DELETE", "/groups/{id}/members/{athlete_id}", remove_member,
             "Remove a member: off the board, a joined session leaves (409 once finished)",
             204, None, None,
             (_GID, Param("athlete_id", "path", _UUID, "athlete (user) id", True)),
             (401, 403, 404, 409, 422)),
    Endpoint("POST", "/groups/{id}/join", join_group,
             "A member's running session joins the group", 200, JoinGroup, GroupMember,
             (_GID,), (400, 401, 403, 404, 409, 422)),
    Endpoint("POST", "/groups/{id}/leave", leave_group,
             "The member's session leaves the group early", 200, None, GroupMember,
             (_GID,), (401, 403, 404, 409, 422)),
    Endpoint("POST", "/groups/{id}/finish", finish_group,
             "Finish the group: the final board is published and the standings stored",
             200, None, GroupOut, (_GID,), (401, 403, 404, 422)),
    Endpoint("POST", "/groups/{id}/messages", post_group_message,
             "The coach's message to everyone in the group (stored, then live)",
             201, GroupMessageBody, GroupMessageOut, (_GID,), (400, 401, 403, 404, 413, 422)),
    Endpoint("GET", "/groups/{id}/messages", list_group_messages, "The group's chat",
             200, None, GroupMessageList,
             (_GID, Param("before_id", "query", _UUID, "messages stored before this one"),
              _LIMIT), (401, 404, 422)),
)  # fmt: skip


def add_group_routes(app: web.Application) -> None:
    for ep in GROUP_ENDPOINTS:
        app.router.add_route(ep.method, PREFIX + ep.path, ep.handler)


__all__ = ["GROUP_ENDPOINTS", "add_group_routes"]
