"""Who may see what: athletes see their own sessions and user channel; a coach sees the
athletes linked to them in ``coach_athletes``; nobody else sees anything.

Answers are cached for a few seconds because the WebSocket subscribe path and the
sample upload path ask on every call; a link removed in PostgreSQL stops granting
access after at most ``ttl_s``.
"""

from __future__ import annotations

import time
from typing import Any

from web.auth import Principal
from web.store import Store

_MISSING = object()


class Forbidden(Exception):
    """The principal may not see or change this resource (403 / close 4403)."""


class NotFound(Exception):
    """The resource does not exist (404)."""


class _TTLCache:
    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return _MISSING
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) >= self._max_entries:
            self._data.clear()  # crude but bounded; the cache refills from PostgreSQL
        self._data[key] = (time.monotonic() + self._ttl_s, value)

    def drop(self, key: Any) -> None:
        self._data.pop(key, None)


class Access:
    def __init__(self, store: Store, *, ttl_s: float = 5.0) -> None:
        self.store = store
        self._links = _TTLCache(ttl_s)
        self._sessions = _TTLCache(ttl_s)

    async def can_see_athlete(self, principal: Principal, athlete_id: int) -> bool:
        if principal.user_id == athlete_id:
            return True
        if not principal.is_coach:
            return False
        key = (principal.user_id, athlete_id)
        cached = self._links.get(key)
        if cached is _MISSING:
            cached = await self.store.is_linked(principal.user_id, athlete_id)
            self._links.put(key, cached)
        return bool(cached)

    async def require_athlete(self, principal: Principal, athlete_id: int) -> None:
        if not await self.can_see_athlete(principal, athlete_id):
            raise Forbidden(f"user {principal.user_id} may not see athlete {athlete_id}")

    async def session_owner(self, session_id: int) -> tuple[int, str] | None:
        """(athlete id, status) of a session, cached briefly; None if there is none."""
        cached = self._sessions.get(session_id)
        if cached is _MISSING:
            row = await self.store.get_session(session_id)
            cached = (row["user_id"], row["status"]) if row else None
            self._sessions.put(session_id, cached)
        return cached  # type: ignore[no-any-return]

    def remember_session(self, row: dict[str, Any]) -> None:
        self._sessions.put(row["id"], (row["user_id"], row["status"]))

    async def require_session(self, principal: Principal, session_id: int) -> tuple[int, str]:
        owner = await self.session_owner(session_id)
        if owner is None:
            raise NotFound(f"no live session {session_id}")
        await self.require_athlete(principal, owner[0])
        return owner

    async def require_session_owner(self, principal: Principal, session_id: int) -> tuple[int, str]:
        """Only the athlete (or their device) may upload samples to a session."""
        owner = await self.session_owner(session_id)
        if owner is None:
            raise NotFound(f"no live session {session_id}")
        if owner[0] != principal.user_id:
            raise Forbidden(f"only athlete {owner[0]} may post samples to session {session_id}")
        return owner
