"""Ephemeral signals: typing indicators and presence ("coach is watching", "athlete
online").

They are not worth a stream entry: they travel on one Redis pub/sub channel shared by
every edge (each edge routes them to its local sockets by their ``channel``), carry no
offset and are not replayed.

On a Redis Cluster the channel is a *sharded* one (``SPUBLISH``/``SSUBSCRIBE``, Redis
7): it lives on the primary of its slot and its replicas, so a message does not cross
the whole cluster bus as a classic ``PUBLISH`` does, and redis-py's cluster pub/sub
moves the subscription to whichever node holds the slot after a failover or a
resharding (a classic subscription stays on the node it first reached, which may be
the dead one). Messages published during a failover are lost, as any ephemeral
signal during an outage is.

Presence is kept **per connection** and shown **per user**: a sorted set per athlete
holds one member per socket and channel following the athlete
(``<user id>:<role>:<connection>/<channel>``,
score = expiry in epoch ms), the athlete's own sockets included (so a coach sees the
athlete online). The edge refreshes its sockets' members on every heartbeat, so an edge
that dies stops claiming them within ``ttl_s``. A user is present while any of their
members is: closing one of two tabs changes nothing. Arrivals are announced at once
(``watching: true``, when none of the user's sockets was there yet; idempotent for
clients); a leave is announced only if, ``grace_s``
(15 s) after the user's last socket went, no socket of theirs (on any edge) came back,
so a phone switching networks does not flap.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPubSub
from redis.exceptions import RedisError

from pipeline.constants import EPHEMERAL_CHANNEL, PRESENCE_KEY, user_channel
from pipeline.models import iso_z
from pipeline.transport.clients import is_cluster
from web.fanout import Hub

log = logging.getLogger(__name__)


def _presence_channels(athlete_id: UUID, watched: str) -> list[str]:
    """The athlete's dashboard listens on its user channel; watchers of the session too."""
    mine = user_channel(athlete_id)
    return [mine] if watched == mine else [mine, watched]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _member(user_id: UUID, role: str, conn_id: str) -> str:
    return f"{user_id}:{role}:{conn_id}"


class Presence:
    def __init__(
        self, redis: aioredis.Redis, hub: Hub, *, ttl_s: float = 30.0, grace_s: float = 15.0
    ) -> None:
        self._redis = redis
        self._hub = hub
        self.ttl_s = ttl_s
        self.grace_s = grace_s
        self._leaving: set[asyncio.Task[None]] = set()

    async def publish(self, channels: list[str], event: dict[str, Any]) -> None:
        event = {**event, "channel": channels[0], "channels": channels}
        payload = json.dumps(event, separators=(",", ":"), default=str)
        if is_cluster(self._redis):
            await self._redis.spublish(EPHEMERAL_CHANNEL, payload)
        else:
            await self._redis.publish(EPHEMERAL_CHANNEL, payload)

    async def _announce(
        self, athlete_id: UUID, user_id: UUID, role: str, channel: str, watching: bool
    ) -> None:
        # The athlete's own comings and goings ("online") go to their user channel only,
        # which the coaches' dashboards follow; a coach's to the channel watched too.
        own = user_id == athlete_id
        await self.publish(
            [user_channel(athlete_id)] if own else _presence_channels(athlete_id, channel),
            {
                "type": "presence",
                "user_id": athlete_id,
                "watcher_id": user_id,
                "role": role,
                "watching": watching,
                "timestamp": iso_z(time.time()),
            },
        )

    async def watch(
        self, athlete_id: UUID, user_id: UUID, role: str, channel: str, conn_id: str
    ) -> None:
        """A socket of ``user_id`` follows the athlete (the athlete's own too); told to
        the athlete's channels when none of the user's did (a second tab is no news)."""
        known = await self.is_present(athlete_id, user_id)
        await self.refresh(athlete_id, user_id, role, conn_id)
        if not known:
            await self._announce(athlete_id, user_id, role, channel, True)

    async def refresh(self, athlete_id: UUID, user_id: UUID, role: str, conn_id: str) -> None:
        key = PRESENCE_KEY.format(athlete_id=athlete_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {_member(user_id, role, conn_id): _now_ms() + int(self.ttl_s * 1000)})
            pipe.expire(key, int(self.ttl_s) + 1)
            await pipe.execute()

    async def unwatch(
        self, athlete_id: UUID, user_id: UUID, role: str, channel: str, conn_id: str
    ) -> None:
        """A socket stopped following; the user's leave is announced after ``grace_s``
        if none of their sockets follows the athlete then. The work is a task of its
        own, started before any await: a socket's cleanup is often being cancelled."""
        task = asyncio.create_task(self._leave(athlete_id, user_id, role, channel, conn_id))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def _leave(
        self, athlete_id: UUID, user_id: UUID, role: str, channel: str, conn_id: str
    ) -> None:
        try:
            key = PRESENCE_KEY.format(athlete_id=athlete_id)
            await self._redis.zrem(key, _member(user_id, role, conn_id))
            if self.grace_s > 0:
                await asyncio.sleep(self.grace_s)
            if not await self.is_present(athlete_id, user_id):
                await self._announce(athlete_id, user_id, role, channel, False)
        except (RedisError, OSError) as exc:  # best effort: the entries expire anyway
            log.debug("presence leave not announced: %s", exc)

    async def is_present(self, athlete_id: UUID, user_id: UUID) -> bool:
        return any(w["user_id"] == str(user_id) for w in await self.watchers(athlete_id))

    async def watchers(self, athlete_id: UUID) -> list[dict[str, Any]]:
        """Who follows the athlete now: one entry per user (however many sockets)."""
        key = PRESENCE_KEY.format(athlete_id=athlete_id)
        now = _now_ms()
        await self._redis.zremrangebyscore(key, "-inf", now)
        members = await self._redis.zrangebyscore(key, now, "+inf")
        out: dict[str, dict[str, Any]] = {}
        for raw in members:
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            user, _, rest = text.partition(":")
            role = rest.partition(":")[0]
            entry = out.setdefault(user, {"user_id": user, "role": role, "connections": 0})
            entry["connections"] += 1
        return list(out.values())

    async def aclose(self) -> None:
        """Drop the leaves still waiting (at shutdown; the entries expire by their TTL)."""
        for task in list(self._leaving):
            task.cancel()
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)

    async def listen(self) -> None:
        """Route pub/sub messages of every edge to this edge's sockets, until cancelled."""
        backoff_s = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                if isinstance(pubsub, ClusterPubSub):
                    await pubsub.ssubscribe(EPHEMERAL_CHANNEL)
                    receive = functools.partial(
                        pubsub.get_sharded_message, ignore_subscribe_messages=True, timeout=1.0
                    )
                else:
                    await pubsub.subscribe(EPHEMERAL_CHANNEL)
                    receive = functools.partial(pubsub.get_message, timeout=1.0)
                backoff_s = 0.1
                while True:
                    message = await receive()
                    if message is None:
                        continue
                    self._route(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("presence channel failed (%s); retrying in %.1fs", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(5.0, backoff_s * 2)
            finally:
                await pubsub.aclose()

    def _route(self, data: Any) -> None:
        try:
            event = json.loads(data)
        except (ValueError, TypeError):
            return
        if not isinstance(event, dict):
            return
        channels = event.get("channels")
        kind = event.get("type")
        if isinstance(channels, list) and isinstance(kind, str):
            frame = data if isinstance(data, str) else data.decode()
            self._hub.broadcast_ephemeral([c for c in channels if isinstance(c, str)], frame, kind)
