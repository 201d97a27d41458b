"""Chat as the spec names it: ``message``, ``sender_id``, ``recipient_id`` on REST and
the socket (``text``/``from`` still taken and sent), and read receipts per recipient;
over real sockets, Redis and PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.web.conftest import ATHLETE, COACH, OTHER_COACH
from tests.web.conftest import call as _call

pytestmark = pytest.mark.integration


@pytest.fixture
def two_coaches(database_url: str, users: None) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)",
            (OTHER_COACH, ATHLETE),
        )


async def test_one_naming_scheme_and_a_recipient(
    edge: Any, two_coaches: None, next_of: Any
) -> None:
    sid = await edge.start_session()
    coach_ws = await edge.ws(COACH, "coach")
    await coach_ws.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    await next_of(coach_ws, "ack")

    to_you = {"session_id": sid, "message": "to you", "recipient_id": str(COACH)}
    status, row = await _call(edge, "POST", "/messages", ATHLETE, "athlete", to_you)
    assert status == 201, row
    assert (row["sender_id"], row["recipient_id"], row["message"]) == (
        str(ATHLETE),
        str(COACH),
        "to you",
    )
    event = (await next_of(coach_ws, "message"))["message"]
    assert (event["sender_id"], event["recipient_id"], event["message"]) == (
        str(ATHLETE),
        str(COACH),
        "to you",
    )
    assert (event["from"], event["text"]) == (str(ATHLETE), "to you")  # the old names, kept

    # The old name is still taken; without a recipient, the session's coach (none: all).
    status, row = await _call(edge, "POST", "/messages", ATHLETE, "athlete",
                              {"session_id": sid, "text": "to all"})  # fmt: skip
    assert status == 201 and row["message"] == "to all" and row["recipient_id"] is None
    assert (await next_of(coach_ws, "message"))["message"]["recipient_id"] is None

    # The socket takes the same names.
    frame = {"type": "message", "id": 3, "session_id": sid, "message": "from the socket",
             "recipient_id": str(ATHLETE)}  # fmt: skip
    await coach_ws.send_json(frame)
    event = (await next_of(coach_ws, "message"))["message"]
    assert (event["sender_id"], event["recipient_id"]) == (str(COACH), str(ATHLETE))
    ack = await next_of(coach_ws, "ack")
    assert ack["ref"] == 3 and ack["op"] == "message"
    await coach_ws.close()

    bad: list[tuple[UUID, dict[str, Any], str]] = [
        (ATHLETE, {"message": "a", "text": "b"}, "message"),
        (ATHLETE, {}, "message"),
        (ATHLETE, {"message": "x", "recipient_id": str(ATHLETE)}, "recipient_id"),  # oneself
        (ATHLETE, {"message": "x", "recipient_id": str(UUID(int=99))}, "recipient_id"),
        (ATHLETE, {"message": "x", "recipient_id": "nope"}, "recipient_id"),
    ]
    for user, body, field in bad:
        status, problem = await _call(edge, "POST", "/messages", user, "athlete",
                                      {"session_id": sid, **body})  # fmt: skip
        assert status == 422, (body, problem)
        assert field in problem["detail"], (body, problem)


async def test_read_receipts_per_recipient(edge: Any, two_coaches: None, next_of: Any) -> None:
    sid = await edge.start_session()
    post = {"session_id": sid}
    _, to_all = await _call(edge, "POST", "/messages", ATHLETE, "athlete",
                            {**post, "message": "hello coaches"})  # fmt: skip
    only = {**post, "message": "only coach 2", "recipient_id": str(COACH)}
    _, to_coach = await _call(edge, "POST", "/messages", ATHLETE, "athlete", only)
    athlete_ws = await edge.ws()
    await athlete_ws.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
    await next_of(athlete_ws, "ack")

    # The other coach reads up to the newest: only the message to everyone is theirs.
    status, body = await _call(edge, "POST", f"/messages/{sid}/read", OTHER_COACH, "coach",
                               {"up_to_id": to_coach["id"]})  # fmt: skip
    assert status == 200 and body["read"] == [to_all["id"]]
    receipt = await next_of(athlete_ws, "read_receipt")
    assert receipt["reader_id"] == str(OTHER_COACH) and receipt["message_ids"] == [to_all["id"]]
    # Coach 2 reads both; reading again changes nothing.
    status, body = await _call(edge, "POST", f"/messages/{sid}/read", COACH, "coach",
                               {"up_to_id": to_coach["id"]})  # fmt: skip
    assert body["read"] == [to_all["id"], to_coach["id"]]
    status, body = await _call(edge, "POST", f"/messages/{sid}/read", COACH, "coach",
                               {"up_to_id": to_coach["id"]})  # fmt: skip
    assert body["read"] == []
    await athlete_ws.close()

    status, listed = await _call(edge, "GET", f"/messages/{sid}", ATHLETE, "athlete")
    assert status == 200
    readers = {m["message"]: [r["reader_id"] for r in m["reads"]] for m in listed["messages"]}
    assert readers == {
        "hello coaches": [str(OTHER_COACH), str(COACH)],
        "only coach 2": [str(COACH)],
    }
    first = {m["message"]: m["read_at"] for m in listed["messages"]}
    assert all(first.values())  # the first read, for clients that know only read_at
