"""Who may see what: athletes see their own sessions and user channel; a coach sees the
athletes linked to them in ``coach_athletes``; nobody else sees anything.

Answers are cached because the WebSocket subscribe path and the sample upload path ask
on every call. A coach link made or removed in PostgreSQL reaches every edge at once
(:mod:`web.revocation` calls :meth:`Access.forget_link`); ``ttl_s`` only bounds a change
an edge missed while its listener was reconnecting. A session's owner never changes, so
it is kept for ``session_ttl_s``; the only status change that matters here, a stop,
reaches every edge on ``live`` (the agents' ``session_event`` ``stop``, seen by the
tailer: :meth:`Access.observe_live_event`), so a stopped session refuses samples on
every edge within the stream's lag, not a TTL. An admin sees no athlete by being one:
the role manages users and links, nothing more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from pipeline.users import UserId
from web.auth import Principal
from web.errors import EdgeError
from web.store import Store

#: What :meth:`TTLCache.get` returns for a key it does not hold (or holds expired).
MISSING = object()


class _Refusal(EdgeError):
    """A refusal that may name the request field it is about."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Forbidden(_Refusal):
    """The principal may not see or change this resource (403 / close 4403)."""


class NotFound(_Refusal):
    """The resource does not exist (404)."""


class TTLCache:
    """Values kept for ``ttl_s``, loaded once however many callers ask at the same time.

    ``none_ttl_s``: how long a ``None`` (an absence) is kept instead, if shorter.
    """

    def __init__(
        self, ttl_s: float, max_entries: int = 100_000, *, none_ttl_s: float | None = None
    ) -> None:
        self._ttl_s = ttl_s
        self._none_ttl_s = ttl_s if none_ttl_s is None else min(ttl_s, none_ttl_s)
        self._max_entries = max_entries
        self._data: dict[Any, tuple[float, Any]] = {}
        self._loading: dict[Any, asyncio.Future[Any]] = {}
        #: Bumped by drop/clear: a load that started before is not stored afterwards.
        self._generation = 0

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return MISSING
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) >= self._max_entries:
            self._data.clear()  # crude but bounded; the cache refills from PostgreSQL
        ttl_s = self._none_ttl_s if value is None else self._ttl_s
        self._data[key] = (time.monotonic() + ttl_s, value)

    def drop(self, key: Any) -> None:
        """Forget a key, including a load under way (its result is not kept)."""
        self._data.pop(key, None)
        self._loading.pop(key, None)
        self._generation += 1

    def clear(self) -> None:
        self._data.clear()
        self._loading.clear()
        self._generation += 1

    async def get_or_load(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value, or one load shared by every concurrent caller of the key.

        Without the sharing a reconnect storm (thousands of sockets resuming the same
        few hundred sessions at once) sends thousands of identical queries to a pool
        of ten connections.
        """
        value = self.get(key)
        if value is not MISSING:
            return value
        pending = self._loading.get(key)
        if pending is None:
            generation = self._generation
            pending = asyncio.ensure_future(load())
            self._loading[key] = pending
            try:
                value = await asyncio.shield(pending)
            finally:
                if self._loading.get(key) is pending:
                    del self._loading[key]
            if generation == self._generation:
                self.put(key, value)
            return value
        return await asyncio.shield(pending)


class Access:
    def __init__(
        self,
        store: Store,
        *,
        ttl_s: float = 5.0,
        session_ttl_s: float = 300.0,
        absent_session_ttl_s: float = 1.0,
    ) -> None:
        self.store = store
        self._links = TTLCache(ttl_s)
        # At 1 Hz per device a short TTL meant a PostgreSQL query per session every few
        # seconds: a quarter of the edge's CPU with 1,000 devices posting. An absence is
        # kept for a second only: a session another edge creates must not stay unknown
        # here (a probe of the next id used to hide it for the whole 300 s). A second
        # still shares one query among a burst of probes of a missing id.
        self._sessions = TTLCache(session_ttl_s, none_ttl_s=absent_session_ttl_s)
        #: Bumped whenever links change: a subscribe that was being authorized meanwhile
        #: checks again once registered (it may have read the link before it went).
        self.revision = 0

    async def can_see_athlete(self, principal: Principal, athlete_id: UserId) -> bool:
        if principal.user_id == athlete_id:
            return True
        if not principal.is_coach:
            return False
        coach_id = principal.user_id
        linked = await self._links.get_or_load(
            (coach_id, athlete_id), lambda: self.store.is_linked(coach_id, athlete_id)
        )
        return bool(linked)

    def forget_link(self, coach_id: UserId | None, athlete_id: UserId | None) -> None:
        """Drop cached answers about a link (None: every link of that side)."""
        self.revision += 1
        if coach_id is not None and athlete_id is not None:
            self._links.drop((coach_id, athlete_id))
        else:
            self._links.clear()

    async def require_athlete(self, principal: Principal, athlete_id: UserId) -> None:
        if not await self.can_see_athlete(principal, athlete_id):
            raise Forbidden(f"user {principal.user_id} may not see athlete {athlete_id}")

    async def session_owner(self, session_id: UUID) -> tuple[UserId, str] | None:
        """(athlete id, status) of a session, cached briefly; None if there is none."""

        async def load() -> tuple[UserId, str] | None:
            row = await self.store.get_session(session_id)
            return (row["user_id"], row["status"]) if row else None

        return await self._sessions.get_or_load(session_id, load)  # type: ignore[no-any-return]

    def remember_session(self, row: dict[str, Any]) -> None:
        self._sessions.put(row["id"], (row["user_id"], row["status"]))

    def observe_live_event(self, event: dict[str, Any]) -> None:
        """Learn from ``live`` that a session was stopped (by whichever edge)."""
        if event.get("type") != "session_event" or event.get("event") != "stop":
            return
        session_id, user_id = event.get("session_id"), event.get("user_id")
        if isinstance(session_id, str) and isinstance(user_id, str):
            try:
                key, owner = UUID(session_id), UUID(user_id)
            except ValueError:
                return
            self._sessions.put(key, (owner, "completed"))

    async def require_session(self, principal: Principal, session_id: UUID) -> tuple[UserId, str]:
        """(athlete id, status) of a session the principal may see; NotFound otherwise.

        A session someone may not see gets the answer of one that does not exist (the
        same 404, the same words), so that trying ids tells nobody which exist.
        """
        owner = await self.session_owner(session_id)
        if owner is None or not await self.can_see_athlete(principal, owner[0]):
            raise NotFound(f"no live session {session_id}")
        return owner

    async def require_session_owner(
        self, principal: Principal, session_id: UUID
    ) -> tuple[UserId, str]:
        """Only the athlete (or their device) may upload samples to a session.

        A linked coach, who may see the session, is told so (403); anyone else gets
        the 404 of a session that does not exist.
        """
        owner = self._sessions.get(session_id)  # every post asks: the athlete's own, cached
        if owner is not MISSING and owner is not None and owner[0] == principal.user_id:
            return owner  # type: ignore[no-any-return]
        owner = await self.require_session(principal, session_id)
        if owner[0] != principal.user_id:
            raise Forbidden(f"only athlete {owner[0]} may post samples to session {session_id}")
        return owner
