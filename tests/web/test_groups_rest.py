"""Group sessions over REST (issue 20, docs/groups.md): a real edge on a loopback socket
over real Redis and PostgreSQL; what the agents get is read back from the streams."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import redis
import redis.asyncio as aioredis

from pipeline.constants import GROUPS_TOPIC, SAMPLES_TOPIC
from pipeline.records import (
    ControlRecord,
    GroupControlRecord,
    group_key,
    groups_topic_record,
    samples_topic_record,
    session_key,
)
from pipeline.transport.streams import partition_for_key, read
from tests.web.conftest import ATHLETE, COACH, OTHER_ATHLETE, OTHER_COACH, call

pytestmark = pytest.mark.integration

RACE = {"name": "Tuesday 10k", "sport": "run", "kind": "race",
        "starts_at": "2026-12-08T18:00:00Z", "distance_m": 10_000}  # fmt: skip


async def _group_controls(redis_url: str, group_id: str, partitions: int) -> list[Any]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        p = partition_for_key(group_key(group_id), partitions)
        entries = await read(redis, GROUPS_TOPIC, p, 0)
    finally:
        await redis.aclose()
    records = [groups_topic_record.validate_json(value) for _, (key, value, _, _) in entries
               if key == group_key(group_id)]  # fmt: skip
    return [r for r in records if isinstance(r, GroupControlRecord)]


async def _session_controls(redis_url: str, session_id: str, partitions: int) -> list[Any]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        p = partition_for_key(session_key(session_id), partitions)
        entries = await read(redis, SAMPLES_TOPIC, p, 0)
    finally:
        await redis.aclose()
    records = [samples_topic_record.validate_json(value) for _, (_, value, _, _) in entries]
    return [r for r in records if isinstance(r, ControlRecord) and str(r.session_id) == session_id]


async def _new_race(edge: Any) -> str:
    status, body = await call(edge, "POST", "/groups", COACH, "coach", RACE)
    assert status == 201, body
    return str(body["id"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "relay"}, "kind"),
        ({"sport": "swim"}, "sport"),
        ({"name": ""}, "name"),
        ({"distance_m": -5}, "distance_m"),
        ({"kind": "class"}, "distance_m"),  # a class has no finish line
        ({"starts_at": "soon"}, "starts_at"),
        ({"plan": {"intervals": []}}, "plan"),  # a race has no shared plan
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_group_is_a_422_naming_the_field(
    edge: Any, change: dict[str, Any], field: str
) -> None:
    status, body = await call(edge, "POST", "/groups", COACH, "coach", {**RACE, **change})
    assert status == 422, body
    assert body["errors"][0]["field"] == field, body


async def test_create_invite_join_leave_finish(edge: Any, redis_url: str, settings: Any) -> None:
    parts = settings.samples_partitions
    # Only a coach creates a group.
    assert (await call(edge, "POST", "/groups", ATHLETE, "athlete", RACE))[0] == 403
    gid = await _new_race(edge)
    created = await _group_controls(redis_url, gid, parts)
    assert [r.action for r in created] == ["created"]
    group = created[0].payload["group"]
    assert group["distance_m"] == 10_000 and group["kind"] == "race" and group["id"] == gid

    # Only athletes linked to the coach; the field is named.
    status, body = await call(
        edge, "POST", f"/groups/{gid}/members", COACH, "coach", {"athlete_id": str(OTHER_ATHLETE)}
    )
    assert status == 422 and body["errors"][0]["field"] == "athlete_id", body
    invite = {"athlete_id": str(ATHLETE)}
    assert (await call(edge, "POST", f"/groups/{gid}/members", COACH, "coach", invite))[0] == 201
    status, member = await call(edge, "POST", f"/groups/{gid}/members", COACH, "coach", invite)
    assert status == 200 and member["athlete_id"] == str(ATHLETE) and member["session_id"] is None
    # A member may not invite.
    assert (await call(edge, "POST", f"/groups/{gid}/members", ATHLETE, "athlete", invite))[
        0
    ] == 403

    # Someone else's group answers as a missing one.
    for user, role in ((OTHER_COACH, "coach"), (OTHER_ATHLETE, "athlete")):
        status, body = await call(edge, "GET", f"/groups/{gid}", user, role)
        assert status == 404, (role, body)
        assert (await call(edge, "GET", "/groups", user, role))[1]["groups"] == []
    status, group = await call(edge, "GET", f"/groups/{gid}", ATHLETE, "athlete")
    assert status == 200 and [m["name"] for m in group["members"]] == [f"user {ATHLETE.int}"]
    assert [g["id"] for g in (await call(edge, "GET", "/groups", COACH, "coach"))[1]["groups"]] == [
        gid
    ]
    assert [
        g["id"] for g in (await call(edge, "GET", "/groups", ATHLETE, "athlete"))[1]["groups"]
    ] == [gid]

    # A running session joins late; the live agent learns it in order with the samples.
    sid = await edge.start_session()
    status, member = await call(edge, "POST", f"/groups/{gid}/join", ATHLETE, "athlete",
                                {"session_id": sid})  # fmt: skip
    assert status == 200 and member["session_id"] == sid and member["joined_at"], member
    assert (await call(edge, "GET", f"/groups/{gid}", COACH, "coach"))[1]["status"] == "live"
    controls = await _session_controls(redis_url, sid, parts)
    assert [c.action for c in controls] == ["start", "group"]
    assert controls[1].payload["group"]["id"] == gid
    assert controls[1].payload["group"]["starts_at_ms"] == 1_796_752_800_000

    # Leaves early; leaving twice is a conflict.
    status, member = await call(edge, "POST", f"/groups/{gid}/leave", ATHLETE, "athlete")
    assert status == 200 and member["left_at"], member
    assert (await call(edge, "POST", f"/groups/{gid}/leave", ATHLETE, "athlete"))[0] == 409
    left = (await _session_controls(redis_url, sid, parts))[-1]
    assert left.action == "group" and left.payload == {"group": None, "left": gid}

    # A session started with group_id joins at its start (the start record says so).
    status, started = await call(edge, "POST", "/sessions/start", ATHLETE, "athlete",
                                 {"group_id": gid})  # fmt: skip
    assert status == 201, started
    start = (await _session_controls(redis_url, str(started["id"]), parts))[0]
    assert start.action == "start" and start.payload["group"]["id"] == gid
    status, group = await call(edge, "GET", f"/groups/{gid}", COACH, "coach")
    assert group["members"][0]["session_id"] == str(started["id"])
    # Not a member: the group_id is named, as a missing group.
    status, body = await call(edge, "POST", "/sessions/start", OTHER_ATHLETE, "athlete",
                              {"group_id": gid})  # fmt: skip
    assert status == 404 and body["errors"][0]["field"] == "group_id", body

    # Only the coach finishes; finishing again is harmless; then nobody joins.
    assert (await call(edge, "POST", f"/groups/{gid}/finish", ATHLETE, "athlete"))[0] == 403
    status, group = await call(edge, "POST", f"/groups/{gid}/finish", COACH, "coach")
    assert status == 200 and group["status"] == "finished" and group["finished_at"]
    status, again = await call(edge, "POST", f"/groups/{gid}/finish", COACH, "coach")
    assert status == 200 and again["finished_at"] == group["finished_at"]
    assert [r.action for r in await _group_controls(redis_url, gid, parts)] == [
        "created",
        "finished",
        "finished",
    ]
    sid2 = await edge.start_session()
    status, body = await call(edge, "POST", f"/groups/{gid}/join", ATHLETE, "athlete",
                              {"session_id": sid2})  # fmt: skip
    assert status == 409, body
    status, group = await call(edge, "GET", f"/groups/{gid}", ATHLETE, "athlete")
    assert group["standings"] == []  # stored by the agents' store app (none ran here)

    # Once finished, a member stays: the stored standings are final.
    assert (await call(edge, "DELETE", f"/groups/{gid}/members/{ATHLETE}", COACH, "coach"))[
        0
    ] == 409

    # Removing a member; then the group is theirs no more, the agents are told.
    gid = await _new_race(edge)
    assert (await call(edge, "POST", f"/groups/{gid}/members", COACH, "coach",
                       {"athlete_id": str(ATHLETE)}))[0] == 201  # fmt: skip
    assert (await call(edge, "DELETE", f"/groups/{gid}/members/{ATHLETE}", COACH, "coach"))[
        0
    ] == 204
    removed = (await _group_controls(redis_url, gid, parts))[-1]
    assert removed.action == "removed"
    assert removed.payload["athlete_id"] == str(ATHLETE) and not removed.payload["leaving"]
    assert (await call(edge, "DELETE", f"/groups/{gid}/members/{ATHLETE}", COACH, "coach"))[
        0
    ] == 404
    assert (await call(edge, "GET", f"/groups/{gid}", ATHLETE, "athlete"))[0] == 404


async def test_join_needs_the_members_own_running_session(edge: Any, database_url: str) -> None:
    gid = await _new_race(edge)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
                     (COACH, OTHER_ATHLETE))  # fmt: skip
    for athlete in (ATHLETE, OTHER_ATHLETE):
        status, _ = await call(edge, "POST", f"/groups/{gid}/members", COACH, "coach",
                               {"athlete_id": str(athlete)})  # fmt: skip
        assert status == 201
    others = await edge.start_session(OTHER_ATHLETE)
    status, body = await call(edge, "POST", f"/groups/{gid}/join", ATHLETE, "athlete",
                              {"session_id": others})  # fmt: skip
    assert status == 404, body  # someone else's session: as a missing one
    mine = await edge.start_session()
    assert (await call(edge, "POST", f"/sessions/{mine}/stop", ATHLETE, "athlete"))[0] == 200
    status, body = await call(edge, "POST", f"/groups/{gid}/join", ATHLETE, "athlete",
                              {"session_id": mine})  # fmt: skip
    assert status == 409, body
    status, body = await call(edge, "POST", f"/groups/{gid}/join", ATHLETE, "athlete",
                              {"session_id": "nope"})  # fmt: skip
    assert status == 422 and body["errors"][0]["field"] == "session_id", body
    # The coach does not join.
    status, body = await call(edge, "POST", f"/groups/{gid}/join", COACH, "coach",
                              {"session_id": mine})  # fmt: skip
    assert status == 403, body


async def test_group_chat_is_the_coachs_and_listed(edge: Any) -> None:
    gid = await _new_race(edge)
    await call(edge, "POST", f"/groups/{gid}/members", COACH, "coach", {"athlete_id": str(ATHLETE)})
    status, row = await call(edge, "POST", f"/groups/{gid}/messages", COACH, "coach",
                             {"message": "Go!"})  # fmt: skip
    assert status == 201 and row["message"] == "Go!" and row["group_id"] == gid, row
    status, body = await call(edge, "POST", f"/groups/{gid}/messages", ATHLETE, "athlete",
                              {"message": "me too"})  # fmt: skip
    assert status == 403, body
    status, body = await call(edge, "POST", f"/groups/{gid}/messages", COACH, "coach",
                              {"message": ""})  # fmt: skip
    assert status == 422 and body["errors"][0]["field"] == "message", body
    await call(edge, "POST", f"/groups/{gid}/messages", COACH, "coach", {"message": "Last lap"})
    status, listed = await call(edge, "GET", f"/groups/{gid}/messages", ATHLETE, "athlete")
    assert status == 200 and [m["message"] for m in listed["messages"]] == ["Go!", "Last lap"]
    first, second = listed["messages"]
    status, older = await call(
        edge, "GET", f"/groups/{gid}/messages?before_id={second['id']}", COACH, "coach"
    )
    assert [m["id"] for m in older["messages"]] == [first["id"]]
    assert (await call(edge, "GET", f"/groups/{gid}/messages", OTHER_ATHLETE, "athlete"))[0] == 404


async def test_a_retried_group_message_is_stored_and_sent_once(edge: Any, redis_url: str) -> None:
    gid = await _new_race(edge)
    body = {"message": "Two to go", "client_message_id": "c-17"}
    status, first = await call(edge, "POST", f"/groups/{gid}/messages", COACH, "coach", body)
    assert status == 201 and first["client_message_id"] == "c-17", first
    # The retry after a lost answer: the first row again, 200, nothing published again.
    status, again = await call(edge, "POST", f"/groups/{gid}/messages", COACH, "coach", body)
    assert (status, again["id"]) == (200, first["id"]), again
    status, listed = await call(edge, "GET", f"/groups/{gid}/messages", COACH, "coach")
    assert [m["id"] for m in listed["messages"]] == [first["id"]]
    client = redis.Redis.from_url(redis_url)
    try:
        sent = [
            fields
            for stream in client.scan_iter(match="*live*", _type="stream")
            for _, fields in client.xrange(stream)
            if any(b"Two to go" in v for v in fields.values())
        ]
    finally:
        client.close()
    assert len(sent) == 1, sent
