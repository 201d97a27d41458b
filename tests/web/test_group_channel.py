"""The channel ``live:group:{id}`` (issue 20, docs/groups.md "Delivery"): who may follow
it, the stored board first, at most one leaderboard frame a second per socket, merged
when behind, resume, the members' alerts for the coach only, group chat. A real edge
on a loopback socket over real Redis and PostgreSQL; the agents' side (leaderboard
events on ``live``, the board at ``group_board_key``) is written here as they write it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest
import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC, group_board_key, group_channel
from pipeline.records import group_key, session_key
from pipeline.transport.streams import append, partition_for_key
from tests.web.conftest import ATHLETE, COACH, OTHER_ATHLETE, OTHER_COACH, call, frames_until

pytestmark = pytest.mark.integration


def row(athlete: UUID, rank: int | None, distance_m: float | None) -> dict[str, Any]:
    return {"athlete_id": str(athlete), "session_id": None, "rank": rank,
            "status": "active" if rank else "no_data", "distance_m": distance_m,
            "elapsed_s": 60.0, "gap_m": None, "gap_s": None, "finish_s": None,
            "pct_target": None, "time_in_zone_s": None, "w_per_kg": None, "np_w": None,
            "alerts_open": 0}  # fmt: skip


def board(gid: str, seq: int, rows: list[dict[str, Any]], *, full: bool = False) -> dict[str, Any]:
    """A leaderboard event as the agents publish it (their epoch time)."""
    return {"type": "leaderboard", "group_id": gid, "kind": "race", "seq": seq,
            "timestamp": time.time(), "full": full, "final": False,
            "ingest_ms": int(time.time() * 1000), "rows": rows, "removed": [],
            "channels": [group_channel(gid)]}  # fmt: skip


async def publish(redis_url: str, key: bytes, events: list[dict[str, Any]]) -> list[int]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        now = int(time.time() * 1000)
        entries = [(key, json.dumps(e).encode(), None, now) for e in events]
        return await append(redis, LIVE_TOPIC, partition_for_key(key, 4), entries)
    finally:
        await redis.aclose()


async def store_board(redis_url: str, gid: str, event: dict[str, Any]) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.set(group_board_key(gid), json.dumps({**event, "full": True}))
    finally:
        await redis.aclose()


async def new_group(edge: Any, database_url: str) -> str:
    """A race of COACH with ATHLETE and OTHER_ATHLETE (linked here) as members."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
                     (COACH, OTHER_ATHLETE))  # fmt: skip
    status, group = await call(edge, "POST", "/groups", COACH, "coach",
                               {"name": "Race", "sport": "run", "kind": "race",
                                "starts_at": time.time(), "distance_m": 5000})  # fmt: skip
    assert status == 201, group
    gid = str(group["id"])
    for athlete in (ATHLETE, OTHER_ATHLETE):
        status, _ = await call(edge, "POST", f"/groups/{gid}/members", COACH, "coach",
                               {"athlete_id": str(athlete)})  # fmt: skip
        assert status == 201
    return gid


async def subscribe(ws: Any, channel: str) -> dict[str, Any]:
    await ws.send_json({"type": "subscribe", "channel": channel, "id": "s"})
    frames = await frames_until(ws, lambda f: f.get("ref") == "s", 5)
    return frames[-1]


async def test_only_the_coach_and_members_follow_a_group(edge: Any, database_url: str) -> None:
    gid = await new_group(edge, database_url)
    for user, role, answer in ((COACH, "coach", "ack"), (ATHLETE, "athlete", "ack"),
                               (OTHER_COACH, "coach", "error")):  # fmt: skip
        ws = await edge.ws(user, role)
        reply = await subscribe(ws, group_channel(gid))
        assert reply["type"] == answer, (role, reply)
        if answer == "error":  # as for a group that does not exist; the socket stays open
            assert reply["code"] == "not_found", reply
            missing = await subscribe(ws, group_channel(str(uuid.uuid4())))
            assert missing["code"] == "not_found"
            assert missing["message"].split(" ")[:2] == reply["message"].split(" ")[:2]
        await ws.close()


async def test_stored_board_first_then_at_most_one_frame_a_second_merged(
    edge: Any, redis_url: str, database_url: str
) -> None:
    gid = await new_group(edge, database_url)
    a, b = ATHLETE, OTHER_ATHLETE
    await store_board(redis_url, gid, board(gid, 5, [row(a, 1, 900.0), row(b, 2, 800.0)]))
    ws = await edge.ws(COACH, "coach")  # the whole board (a member gets its window)
    ack = await subscribe(ws, group_channel(gid))
    assert ack["type"] == "ack" and len(ack["cursor"]) == 1
    first = (await frames_until(ws, lambda f: f["type"] == "leaderboard", 5))[-1]
    t_first = time.monotonic()
    assert first["full"] is True and first["seq"] == 5 and "offset" not in first
    assert first["channel"] == group_channel(gid)
    assert [r["athlete_id"] for r in first["rows"]] == [str(a), str(b)]

    # Two deltas at once, right after the board: one frame, a second after the first,
    # with each athlete's newest row (a merged delta says where it starts).
    key = group_key(gid)
    await publish(redis_url, key, [board(gid, 6, [row(b, 1, 950.0), row(a, 2, 940.0)])])
    offsets = await publish(redis_url, key, [board(gid, 7, [row(b, 1, 990.0)])])
    merged = (await frames_until(ws, lambda f: f["type"] == "leaderboard", 5))[-1]
    waited = time.monotonic() - t_first
    assert 0.9 <= waited < 2.0, waited
    assert merged["full"] is False and merged["seq"] == 7 and merged["from_seq"] == 6, merged
    rows = {r["athlete_id"]: r["distance_m"] for r in merged["rows"]}
    assert rows == {str(b): 990.0, str(a): 940.0}
    assert merged["offset"].endswith(f":{offsets[0]}")

    # A delta more than a second later goes out as published (no from_seq).
    await asyncio.sleep(1.05)
    await publish(redis_url, key, [board(gid, 8, [row(a, 1, 1000.0)])])
    t_pub = time.monotonic()
    latest = (await frames_until(ws, lambda f: f["type"] == "leaderboard", 5))[-1]
    assert latest["seq"] == 8 and "from_seq" not in latest
    assert time.monotonic() - t_pub < 0.5
    await ws.close()


async def test_a_member_gets_its_window_of_the_board(
    edge: Any, redis_url: str, database_url: str
) -> None:
    gid = await new_group(edge, database_url)
    others = [uuid.uuid4() for _ in range(6)]
    order = [*others[:4], ATHLETE, *others[4:]]  # ATHLETE 5th of 7
    rows = [row(athlete, i + 1, 1000.0 - i) for i, athlete in enumerate(order)]
    await store_board(redis_url, gid, board(gid, 3, rows))
    ws = await edge.ws()
    assert (await subscribe(ws, group_channel(gid)))["type"] == "ack"
    first = (await frames_until(ws, lambda f: f["type"] == "leaderboard", 5))[-1]
    assert first["window"] is True and first["full"] is True and first["size"] == 7
    # The leader, two above, the athlete, two below.
    assert [r["athlete_id"] for r in first["rows"]] == [str(order[i]) for i in (0, 2, 3, 4, 5, 6)]
    moved_rows = [row(ATHLETE, 1, 1100.0), row(order[0], 2, 1000.0)]
    await publish(redis_url, group_key(gid), [board(gid, 4, moved_rows)])
    moved = (await frames_until(ws, lambda f: f["type"] == "leaderboard", 5))[-1]
    assert moved["seq"] == 4 and moved["full"] is True and moved["offset"]
    assert [r["athlete_id"] for r in moved["rows"]][:2] == [str(ATHLETE), str(order[0])]
    assert len(moved["rows"]) == 3  # itself (the leader now) and the two below
    await ws.close()


async def test_resume_sends_the_current_board_and_replays_the_chat(
    edge: Any, redis_url: str, database_url: str
) -> None:
    gid = await new_group(edge, database_url)
    a, b = ATHLETE, OTHER_ATHLETE
    key = group_key(gid)
    await store_board(redis_url, gid, board(gid, 1, [row(a, 1, 10.0), row(b, 2, 5.0)]))
    ws = await edge.ws()
    ack = await subscribe(ws, group_channel(gid))
    await frames_until(ws, lambda f: f["type"] == "leaderboard", 5)
    await ws.close()

    # While the dashboard is away: four emissions (the board stored with the third),
    # and a message from the coach.
    for seq in (2, 3, 4):
        await publish(redis_url, key, [board(gid, seq, [row(b, 1, 10.0 + seq)])])
    await store_board(redis_url, gid, board(gid, 4, [row(b, 1, 14.0), row(a, 2, 10.0)]))
    await publish(redis_url, key, [board(gid, 5, [row(a, 1, 20.0), row(b, 2, 14.0)])])
    status, _ = await call(edge, "POST", f"/groups/{gid}/messages", COACH, "coach",
                           {"message": "Hold the pace"})  # fmt: skip
    assert status == 201

    ws = await edge.ws()
    await ws.send_json({"type": "resume", "cursors": {group_channel(gid): ack["cursor"]}})
    frames = await frames_until(ws, lambda f: f["type"] == "resumed", 5)
    boards = [f for f in frames if f["type"] == "leaderboard"]
    # One frame: the stored board with the newer delta applied.
    assert len(boards) == 1 and boards[0]["full"] is True and boards[0]["seq"] == 5, boards
    assert {r["athlete_id"]: r["distance_m"] for r in boards[0]["rows"]} == {
        str(a): 20.0,
        str(b): 14.0,
    }
    assert [r["athlete_id"] for r in boards[0]["rows"]] == [str(a), str(b)]
    chat = [f for f in frames if f["type"] == "message"]
    assert [m["message"]["message"] for m in chat] == ["Hold the pace"]
    assert chat[0]["group_id"] == gid and chat[0]["offset"]
    assert frames[-1]["recovered"] is True
    await ws.close()


async def test_members_alerts_reach_the_coach_only_and_group_chat_over_the_socket(
    edge: Any, redis_url: str, database_url: str
) -> None:
    gid = await new_group(edge, database_url)
    coach = await edge.ws(COACH, "coach")
    member = await edge.ws()
    for ws in (coach, member):
        assert (await subscribe(ws, group_channel(gid)))["type"] == "ack"
    # An alert of the other member's session, as the agents publish it with group_id.
    sid = str(uuid.uuid4())
    alert = {"type": "alert", "session_id": sid, "user_id": str(OTHER_ATHLETE),
             "group_id": gid, "timestamp": time.time(),
             "alert": {"id": str(uuid.uuid4()), "rule": "hr_zone", "severity": "warning",
                       "message": "HR high", "metric": "heart_rate", "current": 180,
                       "threshold": 175}}  # fmt: skip
    await publish(redis_url, session_key(sid), [alert])
    got = (await frames_until(coach, lambda f: f["type"] == "alert", 5))[-1]
    assert got["channels"][-1] == group_channel(gid) and got["group_id"] == gid
    # The coach writes to everyone on the socket; a member may not.
    await coach.send_json({"type": "message", "group_id": gid, "message": "Easy now", "id": "m"})
    ack = (await frames_until(coach, lambda f: f.get("ref") == "m", 5))[-1]
    assert ack["type"] == "ack" and ack["op"] == "message"
    frames = await frames_until(member, lambda f: f["type"] == "message", 5)
    assert [f["type"] for f in frames if f["type"] == "alert"] == []  # not the member's
    assert frames[-1]["message"]["message"] == "Easy now"
    await member.send_json({"type": "message", "group_id": gid, "message": "hi", "id": "x"})
    refused = (await frames_until(member, lambda f: f.get("ref") == "x", 5))[-1]
    assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    for ws in (coach, member):
        await ws.close()


async def test_a_removed_member_loses_the_channel_on_every_edge(
    edge_factory: Any, redis_url: str, database_url: str
) -> None:
    # The member follows the race through edge B; the coach removes them through edge A.
    edge_a, edge_b = await edge_factory(), await edge_factory()
    gid = await new_group(edge_a, database_url)
    member = await edge_b.ws(OTHER_ATHLETE, "athlete")
    coach = await edge_b.ws(COACH, "coach")
    for ws in (member, coach):
        assert (await subscribe(ws, group_channel(gid)))["type"] == "ack"
    status, _ = await call(edge_a, "DELETE", f"/groups/{gid}/members/{OTHER_ATHLETE}",
                           COACH, "coach")  # fmt: skip
    assert status in (200, 204), status
    t0 = time.monotonic()
    revoked = (await frames_until(member, lambda f: f.get("code") == "access_revoked", 3))[-1]
    assert time.monotonic() - t0 < 1.0
    assert revoked["channel"] == group_channel(gid) and revoked["subscribed"] is False
    # A board published afterwards reaches the coach, not the removed member.
    await publish(redis_url, group_key(gid), [board(gid, 1, [row(ATHLETE, 1, 10.0)], full=True)])
    got = (await frames_until(coach, lambda f: f["type"] == "leaderboard", 5))[-1]
    assert got["seq"] == 1
    with pytest.raises(TimeoutError):
        await frames_until(member, lambda f: f["type"] == "leaderboard", 1.5)
    # And subscribing again is refused as for a group that does not exist.
    again = await subscribe(member, group_channel(gid))
    assert again["type"] == "error" and again["code"] == "not_found", again
    await member.close()
    await coach.close()
