"""Access changes heard from PostgreSQL: a coach link made or removed, a user's role
changed or a user deleted, a group's member removed, by whoever did it (the admin API,
``livecoach users``, the REST of groups, the host's own SQL), reach every edge within a
round trip.

Why PostgreSQL ``LISTEN``/``NOTIFY`` rather than Redis pub/sub: the triggers of
migration 0004 send the notification in the same transaction as the change, on commit,
so no writer can forget to announce it and a rolled-back change is never announced.
Each edge holds one extra PostgreSQL connection for this (it cannot go through a
transaction-pooling PgBouncer; point ``LIVECOACH_DATABASE_URL`` at PostgreSQL or a
session-pooling one).

Notifications are not stored: those sent while an edge's listening connection is down
are lost. So after every (re)connection the edge re-checks every open subscription
against the database (``on_resync``) before it relies on notifications again; a
revocation is thus enforced within a second while the connection is up, and at the
latest when it comes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from pipeline.ids import parse_uuid
from pipeline.users import ACCESS_CHANNEL

log = logging.getLogger(__name__)

AccessEvent = dict[str, Any]


class AccessListener:
    def __init__(
        self,
        database_url: str,
        *,
        on_event: Callable[[AccessEvent], Awaitable[None]],
        on_resync: Callable[[], Awaitable[None]],
    ) -> None:
        self._url = database_url
        self._on_event = on_event
        self._on_resync = on_resync
        #: Set while LISTEN is in effect (tests and /readyz may wait on it).
        self.listening = asyncio.Event()
        self.events = 0

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with a backoff."""
        backoff_s = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            except (psycopg.Error, OSError) as exc:
                log.warning("access listener: cannot connect (%s); retry in %.1fs", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(5.0, backoff_s * 2)
                continue
            try:
                await conn.execute(f"LISTEN {ACCESS_CHANNEL}")
                await self._resync()
                self.listening.set()
                backoff_s = 0.1
                async for note in conn.notifies():
                    await self._dispatch(note.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("access listener lost PostgreSQL (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                await conn.close()
            await asyncio.sleep(backoff_s)

    async def _resync(self) -> None:
        try:
            await self._on_resync()
        except Exception:
            log.exception("access listener: re-checking subscriptions failed")

    async def _dispatch(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("access listener: ignoring a malformed notification %r", payload[:200])
            return
        if not isinstance(event, dict):
            return
        try:
            # Migration 0005's keys: the triggers of 0004 write them as UUID text.
            for name in ("coach_id", "athlete_id", "user_id", "group_id"):
                if event.get(name) is not None:
                    event[name] = parse_uuid(event[name], name)
        except ValueError:
            log.warning("access listener: ignoring a notification with a bad id %r", payload[:200])
            return
        self.events += 1
        try:
            await self._on_event(event)
        except Exception:
            # A failure to enforce one change must not stop the listener; the next
            # resync re-checks everything.
            log.exception("access listener: applying %r failed", event)
