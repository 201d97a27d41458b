"""Ephemeral signals: typing indicators and presence ("coach is watching").

They are not worth a stream entry: they travel on one Redis pub/sub channel shared by
every edge (each edge routes them to its local sockets by their ``channel``), carry no
offset and are not replayed. Who is watching an athlete is also kept in a sorted set
per athlete (member ``<user id>:<role>``, score = expiry in epoch ms) so that a
dashboard opened later can ask; the edge refreshes its watchers' entries on every
heartbeat, so an edge that dies stops claiming them within ``ttl_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pipeline.constants import EPHEMERAL_CHANNEL, PRESENCE_KEY, user_channel
from pipeline.models import iso_z
from web.fanout import Hub

log = logging.getLogger(__name__)


def _presence_channels(athlete_id: UUID, watched: str) -> list[str]:
    """The athlete's dashboard listens on its user channel; watchers of the session too."""
    mine = user_channel(athlete_id)
    return [mine] if watched == mine else [mine, watched]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Presence:
    def __init__(self, redis: aioredis.Redis, hub: Hub, *, ttl_s: float = 30.0) -> None:
        self._redis = redis
        self._hub = hub
        self.ttl_s = ttl_s

    async def publish(self, channels: list[str], event: dict[str, Any]) -> None:
        event = {**event, "channel": channels[0], "channels": channels}
        await self._redis.publish(
            EPHEMERAL_CHANNEL, json.dumps(event, separators=(",", ":"), default=str)
        )

    async def watch(self, athlete_id: UUID, user_id: UUID, role: str, channel: str) -> None:
        key = PRESENCE_KEY.format(athlete_id=athlete_id)
        member = f"{user_id}:{role}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {member: _now_ms() + int(self.ttl_s * 1000)})
            pipe.expire(key, int(self.ttl_s) + 1)
            await pipe.execute()
        await self.publish(
            _presence_channels(athlete_id, channel),
            {
                "type": "presence",
                "user_id": athlete_id,
                "watcher_id": user_id,
                "role": role,
                "watching": True,
                "timestamp": iso_z(time.time()),
            },
        )

    async def refresh(self, athlete_id: UUID, user_id: UUID, role: str) -> None:
        key = PRESENCE_KEY.format(athlete_id=athlete_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {f"{user_id}:{role}": _now_ms() + int(self.ttl_s * 1000)})
            pipe.expire(key, int(self.ttl_s) + 1)
            await pipe.execute()

    async def unwatch(self, athlete_id: UUID, user_id: UUID, role: str, channel: str) -> None:
        await self._redis.zrem(PRESENCE_KEY.format(athlete_id=athlete_id), f"{user_id}:{role}")
        await self.publish(
            _presence_channels(athlete_id, channel),
            {
                "type": "presence",
                "user_id": athlete_id,
                "watcher_id": user_id,
                "role": role,
                "watching": False,
                "timestamp": iso_z(time.time()),
            },
        )

    async def watchers(self, athlete_id: UUID) -> list[dict[str, Any]]:
        key = PRESENCE_KEY.format(athlete_id=athlete_id)
        now = _now_ms()
        await self._redis.zremrangebyscore(key, "-inf", now)
        members = await self._redis.zrangebyscore(key, now, "+inf")
        out = []
        for raw in members:
            user, _, role = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(":")
            out.append({"user_id": user, "role": role})
        return out

    async def listen(self) -> None:
        """Route pub/sub messages of every edge to this edge's sockets, until cancelled."""
        backoff_s = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(EPHEMERAL_CHANNEL)
                backoff_s = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
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
