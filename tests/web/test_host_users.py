"""Identity from the host, over real sockets, Redis and PostgreSQL: provisioning on
first contact, the database's role over the token's claim, the admin surface, and a
removed coach link ending subscriptions on every edge."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import psycopg
import pytest
from aiohttp.test_utils import TestServer

from pipeline.settings import Settings, load_settings
from tests.web.conftest import ATHLETE, COACH, OTHER_ATHLETE, OTHER_COACH, SECRET, Running
from tests.web.issuer import host_user_id as uid
from web.app import create_app
from web.auth import mint_token
from web.ws import ACCESS_REVOKED

pytestmark = pytest.mark.integration

API = "/api/v1/live"
ADMIN = uid(9)
# Users livecoach has never seen (or ids nobody has).
BO, CY, MALLORY, DEE, STRANGER, EVE, NOBODY, NOBODY_ELSE, FIVE = (
    uid(n) for n in (500, 501, 600, 700, 800, 321, 4040, 4041, 5)
)


@pytest.fixture
def admin(database_url: str, users: None) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, name, role) VALUES (%s, 'Ada', 'admin')", (ADMIN,))
    return ADMIN


def _bearer(settings: Settings, user_id: int, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, user_id=user_id, **claims)}"}


async def _call(
    edge: Running, method: str, path: str, user: int, body: Any = None, **claims: Any
) -> tuple[int, Any]:
    async with edge.session.request(
        method,
        edge.url(API + path),
        headers=_bearer(edge.settings, user, **claims),
        **({"json": body} if body is not None else {}),
    ) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def _user_row(database_url: str, user_id: int) -> tuple[Any, ...] | None:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT role, name FROM users WHERE id = %s", (user_id,)).fetchone()


# --- provisioning -------------------------------------------------------------------------


async def test_a_new_user_is_provisioned_from_the_token_claims(
    edge: Running, database_url: str
) -> None:
    assert _user_row(database_url, BO) is None
    status, body = await _call(edge, "POST", "/sessions/start", BO, {}, role="coach", name="Bo")
    # A coach starting a session without an athlete is refused, but the user now exists.
    assert status == 403, body
    assert _user_row(database_url, BO) == ("coach", "Bo")
    status, body = await _call(edge, "POST", "/sessions/start", CY, {}, name="Cy")
    assert status == 201, body
    assert str(body["user_id"]) == str(CY)
    assert _user_row(database_url, CY) == ("athlete", "Cy")  # no role claim: athlete


async def test_a_token_cannot_make_an_admin_or_change_a_known_user(
    edge: Running, database_url: str
) -> None:
    status, _ = await _call(edge, "GET", "/admin/users", MALLORY, role="admin", name="Mallory")
    assert status == 403
    assert _user_row(database_url, MALLORY) == ("athlete", "Mallory")
    # A known user's role and name come from the database, whatever later tokens say.
    status, _ = await _call(edge, "GET", "/admin/users", MALLORY, role="coach", name="Boss")
    assert status == 403
    assert _user_row(database_url, MALLORY) == ("athlete", "Mallory")


async def test_the_database_role_decides_not_the_claim(edge: Running) -> None:
    session_id = await edge.start_session(ATHLETE)
    # An athlete whose token claims "coach" is still an athlete: another's session is not theirs.
    status, body = await _call(edge, "GET", f"/sessions/{session_id}", OTHER_ATHLETE, role="coach")
    assert status == 404, body  # not theirs: the answer of a session that does not exist
    # A coach whose token claims "athlete" is still the linked coach.
    status, body = await _call(edge, "GET", f"/sessions/{session_id}", COACH, role="athlete")
    assert status == 200, body
    ws = await edge.session.ws_connect(
        edge.url(API + "/ws"), headers=_bearer(edge.settings, COACH, role="athlete")
    )
    welcome = await ws.receive_json(timeout=5)
    assert (welcome["type"], welcome["role"]) == ("welcome", "coach")
    await ws.close()


async def test_concurrent_first_contacts_on_two_edges_make_one_user(
    edge_factory: Callable[..., Any], database_url: str
) -> None:
    a, b = await edge_factory(), await edge_factory()
    calls = [
        _call(edge, "GET", "/admin/users", DEE, role="coach", name="Dee")
        for edge in (a, b)
        for _ in range(10)
    ]
    results = await asyncio.gather(*calls)
    assert {status for status, _ in results} == {403}, results  # not admin; no 5xx
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT role, name FROM users WHERE id = %s", (DEE,)).fetchall()
    assert rows == [("coach", "Dee")]


async def test_with_provisioning_off_an_unknown_user_gets_403_saying_so(
    tmp_path: Path, redis_url: str, database_url: str, users: None
) -> None:
    settings = load_settings(
        jwt_secret=SECRET,
        data_dir=tmp_path,
        live_partitions=4,
        samples_partitions=4,
        provision_users=False,
    )
    server = TestServer(create_app(settings, redis_url=redis_url, database_url=database_url))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            url = str(server.make_url(API + "/sessions/start"))
            async with http.post(url, json={}, headers=_bearer(settings, STRANGER)) as resp:
                assert resp.status == 403
                assert resp.content_type == "application/problem+json"
                problem = await resp.json()
            assert f"user {STRANGER} is not known to livecoach" in problem["detail"]
            async with http.post(url, json={}, headers=_bearer(settings, ATHLETE)) as resp:
                assert resp.status == 201  # known users are unaffected
            ws = await http.ws_connect(
                str(server.make_url(API + "/ws")), headers=_bearer(settings, STRANGER)
            )
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert (msg.data, "not known to livecoach" in msg.extra) == (4403, True)
        assert _user_row(database_url, STRANGER) is None
    finally:
        await server.close()


# --- the admin surface --------------------------------------------------------------------


async def test_admin_manages_users_and_links(edge: Running, admin: Any) -> None:
    new = {"id": str(EVE), "role": "coach", "name": "Eve"}
    status, body = await _call(edge, "POST", "/admin/users", admin, new)
    assert status == 201, body
    assert (str(body["id"]), body["role"], body["name"]) == (str(EVE), "coach", "Eve")
    status, body = await _call(edge, "POST", "/admin/users", admin, {**new, "name": "Eva"})
    assert (status, body["name"]) == (200, "Eva")  # the same id again updates
    status, body = await _call(edge, "GET", f"/admin/users/{EVE}", admin)
    assert (status, body["role"]) == (200, "coach")
    pages, after = [], ""
    while after is not None:
        status, body = await _call(edge, "GET", f"/admin/users?role=coach&limit=2{after}", admin)
        assert status == 200, body
        pages.append([str(u["id"]) for u in body["users"]])
        after = f"&after={body['next_after']}" if body["next_after"] is not None else None
    coaches = [i for page in pages for i in page]
    assert sorted(coaches) == sorted(map(str, (COACH, OTHER_COACH, EVE)))
    assert [len(page) for page in pages] == [2, 1]

    link = {"coach_id": str(EVE), "athlete_id": str(OTHER_ATHLETE)}
    status, body = await _call(edge, "POST", "/admin/links", admin, link)
    assert status == 201, body
    assert (str(body["coach_id"]), str(body["athlete_id"])) == (str(EVE), str(OTHER_ATHLETE))
    status, _ = await _call(edge, "POST", "/admin/links", admin, link)
    assert status == 200
    status, body = await _call(edge, "GET", f"/admin/links?athlete={OTHER_ATHLETE}", admin)
    got = [(str(ln["coach_id"]), str(ln["athlete_id"])) for ln in body["links"]]
    assert got == [(str(EVE), str(OTHER_ATHLETE))]
    status, _ = await _call(edge, "DELETE", f"/admin/links/{EVE}/{OTHER_ATHLETE}", admin)
    assert status == 204
    status, body = await _call(edge, "DELETE", f"/admin/links/{EVE}/{OTHER_ATHLETE}", admin)
    assert status == 404, body


def _link(coach: Any, athlete: Any) -> dict[str, str]:
    return {"coach_id": str(coach), "athlete_id": str(athlete)}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/admin/links", _link(NOBODY, ATHLETE), 422, "coach_id"),
        ("POST", "/admin/links", _link(COACH, NOBODY_ELSE), 422, "athlete_id"),
        ("POST", "/admin/links", _link(ATHLETE, COACH), 422, "coach_id"),
        ("POST", "/admin/links", _link(COACH, COACH), 422, "athlete_id"),
        ("POST", "/admin/users", {"id": str(FIVE), "role": "boss"}, 422, "role"),
        ("POST", "/admin/users", {"id": 2**31, "role": "coach"}, 422, "id"),
        (
            "POST",
            "/admin/users",
            {"id": str(FIVE), "role": "coach", "name": "x" * 256},
            422,
            "name",
        ),
        ("GET", "/admin/users/abc", None, 422, "user_id"),
        ("GET", "/admin/users?after=-1", None, 422, "after"),
        ("GET", f"/admin/users/{NOBODY}", None, 404, None),
        ("DELETE", "/admin/links/0/1", None, 422, "coach_id"),
    ],
)
async def test_bad_admin_requests_are_4xx_naming_the_field(
    edge: Running, admin: Any, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    got, problem = await _call(edge, method, path, admin, body)
    assert got == status, problem
    if field is not None:
        assert problem["errors"][0]["field"] == field, problem


async def test_only_admins_reach_the_admin_surface(edge: Running, admin: Any) -> None:
    for user in (ATHLETE, COACH):
        status, problem = await _call(edge, "GET", "/admin/users", user)
        assert status == 403 and "not an admin" in problem["detail"]
    async with edge.session.get(edge.url(API + "/admin/users")) as resp:
        assert resp.status == 401


# --- a removed link ends subscriptions on every edge ----------------------------------------


async def _watching_coach(edge: Running, session_id: int) -> aiohttp.ClientWebSocketResponse:
    ws = await edge.ws(COACH, "coach")
    channels = [f"live:user:{ATHLETE}", f"live:session:{session_id}"]
    await ws.send_json({"type": "subscribe", "channels": channels, "id": "s"})
    acks = set()
    while len(acks) < 2:
        frame = await ws.receive_json(timeout=5)
        if frame["type"] == "ack":
            acks.add(frame["channel"])
    return ws


async def _revocations(ws: aiohttp.ClientWebSocketResponse, count: int, wait_s: float) -> set[str]:
    deadline = time.monotonic() + wait_s
    got: set[str] = set()
    while len(got) < count:
        frame = await ws.receive_json(timeout=max(0.01, deadline - time.monotonic()))
        if frame["type"] == "error":
            assert frame["code"] == ACCESS_REVOKED, frame
            assert frame["subscribed"] is False
            got.add(frame["channel"])
    return got


async def test_a_removed_link_ends_the_coachs_subscriptions_on_every_edge_within_a_second(
    edge_factory: Callable[..., Any], admin: Any, next_of: Callable[..., Any]
) -> None:
    a, b = await edge_factory(), await edge_factory()
    for edge in (a, b):
        await asyncio.wait_for(edge.edge.access_listener.listening.wait(), 10)
    session_id = await a.start_session(ATHLETE)
    on_a, on_b = await _watching_coach(a, session_id), await _watching_coach(b, session_id)
    # Linked: a chat message reaches the coach on both edges.
    hello = {"session_id": session_id, "text": "hi"}
    status, _ = await _call(a, "POST", "/messages", ATHLETE, hello)
    assert status == 201
    for ws in (on_a, on_b):
        assert (await next_of(ws, "message"))["message"]["text"] == "hi"

    started = time.monotonic()
    status, _ = await _call(a, "DELETE", f"/admin/links/{COACH}/{ATHLETE}", admin)
    assert status == 204
    expected = {f"live:user:{ATHLETE}", f"live:session:{session_id}"}
    assert await _revocations(on_b, 2, wait_s=1.0) == expected
    assert await _revocations(on_a, 2, wait_s=1.0) == expected
    assert time.monotonic() - started < 1.0

    # Nothing of the athlete reaches the coach any more, and a new subscribe is refused.
    probe = await b.ws(ATHLETE)
    await probe.send_json({"type": "subscribe", "channel": f"live:session:{session_id}"})
    await next_of(probe, "ack")
    await _call(a, "POST", "/messages", ATHLETE, {"session_id": session_id, "text": "secret"})
    await next_of(probe, "message")  # the athlete's own socket got it: it was delivered
    for ws in (on_a, on_b):
        await ws.send_json({"type": "ping", "id": "p"})
        while (frame := await ws.receive_json(timeout=5))["type"] != "pong":
            assert frame["type"] != "message", frame
    await on_b.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}"})
    closing = await on_b.receive(timeout=5)
    while closing.type == aiohttp.WSMsgType.TEXT:
        closing = await on_b.receive(timeout=5)
    assert closing.data == 4403
    for ws in (on_a, probe):
        await ws.close()


async def test_a_link_deleted_with_plain_sql_is_enforced_too(
    edge: Running, database_url: str
) -> None:
    await asyncio.wait_for(edge.edge.access_listener.listening.wait(), 10)
    session_id = await edge.start_session(ATHLETE)
    ws = await _watching_coach(edge, session_id)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM coach_athletes WHERE coach_id = %s", (COACH,))
    assert len(await _revocations(ws, 2, wait_s=1.0)) == 2
    await ws.close()


async def test_a_removal_missed_while_the_listener_was_down_is_enforced_on_reconnect(
    edge: Running, database_url: str
) -> None:
    listener = edge.edge.access_listener
    assert listener is not None
    await asyncio.wait_for(listener.listening.wait(), 10)
    session_id = await edge.start_session(ATHLETE)
    ws = await _watching_coach(edge, session_id)
    heard = listener.events
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Cut the edge's LISTEN connection, and remove the link before it reconnects
        # (it waits 0.1 s first): the notification goes to nobody.
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query = 'LISTEN livecoach_access' AND datname = current_database()"
        ).fetchall()
        assert killed == [(True,)]
        conn.execute("DELETE FROM coach_athletes WHERE coach_id = %s", (COACH,))
    assert len(await _revocations(ws, 2, wait_s=5.0)) == 2
    assert listener.events == heard  # enforced by the re-check, not by a notification
    await ws.close()


async def test_a_role_changed_in_the_database_applies_to_open_sockets(
    edge: Running, database_url: str, next_of: Callable[..., Any]
) -> None:
    session_id = await edge.start_session(ATHLETE)
    ws = await _watching_coach(edge, session_id)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET role = 'athlete' WHERE id = %s", (COACH,))
    assert len(await _revocations(ws, 2, wait_s=1.0)) == 2
    # The socket now acts as an athlete: a coach's action is refused.
    await ws.send_json({"type": "subscribe", "channel": f"live:user:{ATHLETE}", "id": "again"})
    assert (await next_of(ws, "error"))["code"] == "forbidden"
    await ws.close()


async def test_a_user_deleted_in_the_database_is_disconnected(
    edge: Running, database_url: str
) -> None:
    ws = await edge.ws(OTHER_COACH, "coach")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id = %s", (OTHER_COACH,))
    msg = await ws.receive(timeout=2)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4403), msg
    assert "was removed" in msg.extra


async def test_an_unreachable_issuer_is_503_and_close_1011_not_401(
    tmp_path: Path, redis_url: str, database_url: str, users: None
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    settings = load_settings(
        data_dir=tmp_path,
        live_partitions=4,
        samples_partitions=4,
        jwt_jwks_url="http://127.0.0.1:9/jwks.json",  # nothing listens on port 9
        jwt_algorithms="RS256",
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"sub": str(ATHLETE), "exp": int(time.time()) + 600}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    server = TestServer(create_app(settings, redis_url=redis_url, database_url=database_url))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            url = str(server.make_url(API + "/sessions/start"))
            async with http.post(url, json={}, headers=headers) as resp:
                assert resp.status == 503, await resp.text()
            ws = await http.ws_connect(str(server.make_url(API + "/ws")), headers=headers)
            msg = await ws.receive(timeout=10)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1011), msg
    finally:
        await server.close()
