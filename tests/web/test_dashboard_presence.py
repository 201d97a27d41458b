"""Presence per connection, shown per user, leaves debounced: over real sockets, Redis
and PostgreSQL (a short grace, 1 s, instead of the default 15 s)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.web.conftest import ATHLETE, COACH, EdgeFactory
from web.edge import EdgeConfig

pytestmark = pytest.mark.integration

GRACE_S = 1.0


async def _presence(ws: aiohttp.ClientWebSocketResponse, wait_s: float) -> list[dict[str, Any]]:
    """The presence events that arrive within ``wait_s``."""
    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    while (left := end - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        frame = json.loads(msg.data)
        if frame["type"] == "presence":
            out.append(frame)
    return out


async def _follow(edge: Any, user: Any, role: str, channel: str, next_of: Any) -> Any:
    ws = await edge.ws(user, role)
    await ws.send_json({"type": "subscribe", "channel": channel, "id": 1})
    await next_of(ws, "ack")
    return ws


async def _watchers(edge: Any, sid: str) -> list[dict[str, Any]]:
    async with edge.session.get(
        edge.url(f"/api/v1/live/sessions/{sid}/presence"), headers=edge.headers()
    ) as resp:
        assert resp.status == 200
        return (await resp.json())["watchers"]  # type: ignore[no-any-return]


async def test_two_tabs_one_closes_and_the_coach_still_watches(
    edge_factory: EdgeFactory, next_of: Any
) -> None:
    edge = await edge_factory(EdgeConfig(presence_grace_s=GRACE_S))
    sid = await edge.start_session()
    channel = f"live:user:{ATHLETE}"
    athlete = await _follow(edge, ATHLETE, "athlete", channel, next_of)
    tab1 = await _follow(edge, COACH, "coach", channel, next_of)
    tab2 = await _follow(edge, COACH, "coach", channel, next_of)
    got = await _presence(athlete, 0.5)
    # (the athlete's own arrival may come too, or before the subscribe's ack)
    assert {(p["watcher_id"], p["watching"]) for p in got} - {(str(ATHLETE), True)} == {
        (str(COACH), True)
    }
    watchers = {w["user_id"]: w for w in await _watchers(edge, sid)}
    # One entry per user, however many sockets; the athlete's own counts ("online").
    assert watchers[str(COACH)]["connections"] == 2
    assert watchers[str(ATHLETE)]["role"] == "athlete"

    await tab1.close()
    # The other tab still watches: no leave, not even after the grace.
    assert await _presence(athlete, GRACE_S + 1.0) == []
    assert {w["user_id"]: w["connections"] for w in await _watchers(edge, sid)}[str(COACH)] == 1

    # The last tab goes and comes back within the grace (a phone changing networks):
    # no leave either.
    await tab2.close()
    await asyncio.sleep(GRACE_S / 3)
    tab3 = await _follow(edge, COACH, "coach", channel, next_of)
    got = await _presence(athlete, GRACE_S + 1.0)
    assert all(p["watching"] for p in got), got

    # Gone for good: one leave, after the grace.
    await tab3.close()
    assert await _presence(athlete, GRACE_S * 0.5) == []
    got = await _presence(athlete, GRACE_S + 1.5)
    assert [(p["watcher_id"], p["watching"]) for p in got] == [(str(COACH), False)]
    assert str(COACH) not in {w["user_id"] for w in await _watchers(edge, sid)}
    await athlete.close()


async def test_the_coach_sees_the_athlete_come_online_and_leave(
    edge_factory: EdgeFactory, next_of: Any
) -> None:
    edge = await edge_factory(EdgeConfig(presence_grace_s=GRACE_S))
    channel = f"live:user:{ATHLETE}"
    coach = await _follow(edge, COACH, "coach", channel, next_of)
    athlete = await _follow(edge, ATHLETE, "athlete", channel, next_of)
    got = [p for p in await _presence(coach, 0.5) if p["watcher_id"] != str(COACH)]
    assert [(p["watcher_id"], p["role"], p["watching"]) for p in got] == [
        (str(ATHLETE), "athlete", True)
    ]
    await athlete.close()
    got = await _presence(coach, GRACE_S + 1.5)
    assert [(p["watcher_id"], p["watching"]) for p in got] == [(str(ATHLETE), False)]
    await coach.close()
