"""The edge's state and limits: what every handler reaches through ``request.app[EDGE]``.

Built by :func:`web.app.create_app` (the composition root), used by the route modules
(:mod:`web.rest`, :mod:`web.admin`, :mod:`web.ws`, :mod:`web.resume`), which therefore
never import the app module itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from pipeline.settings import Settings
from pipeline.users import UserId
from web.access import Access
from web.actions import Actions
from web.auth import Principal, TokenVerifier
from web.connection import Connection
from web.directory import Directory
from web.fanout import Hub, LiveTailer
from web.groups import GroupActions
from web.observability import EdgeMetrics
from web.presence import Presence
from web.revocation import AccessListener
from web.store import Store

__all__ = ["EDGE", "Edge", "EdgeConfig"]


@dataclass(frozen=True)
class EdgeConfig:
    """Limits and timings of one edge (defaults suit production; tests shrink them)."""

    #: Largest REST body (bytes): a batch of 3,600 samples fits with room to spare.
    max_body_bytes: int = 2 * 1024 * 1024
    #: Seconds a request body may take to arrive, authenticated or not; then 408 and
    #: the connection is closed (a trickled body was held forever). 300 KB (an hour of
    #: 1 Hz samples) takes 24 s at 100 kbit/s.
    body_timeout_s: float = 30.0
    #: Largest WebSocket message (bytes) of an authenticated socket, on the wire and
    #: once inflated (permessage-deflate); larger closes with 1009, refused on the
    #: frame's header before its payload is read (see web.inbound).
    max_frame_bytes: int = 256 * 1024
    #: Largest message before the socket has authenticated (the auth frame; an RS256
    #: token of a host's identity provider is 1-2 KB): 2,000 unauthenticated sockets
    #: each sending the largest they may, compressed or not, must not grow the edge
    #: by 100 MB (they grew it by 16 MiB each when the limit was the authenticated one).
    auth_frame_bytes: int = 4 * 1024
    #: How long a close waits for the client's close frame before the transport is
    #: aborted (a client that stopped reading never answers).
    close_timeout_s: float = 2.0
    #: Seconds a socket without an Authorization header has to send its auth frame.
    auth_timeout_s: float = 5.0
    #: Server ping interval; the client must send something (a pong will do) within
    #: ``idle_timeout_s`` or is closed with 4408.
    heartbeat_s: float = 15.0
    idle_timeout_s: float = 45.0
    #: Frames a socket may queue before it is closed as too slow (4410).
    max_send_queue: int = 2000
    #: Backlog beyond which a newer metrics_update of a session replaces a queued one.
    coalesce_after: int = 250
    #: Client frames per second per connection (sustained, burst) before 4429.
    frame_rate: float = 50.0
    frame_burst: float = 100.0
    #: Client frames per second per user over all their sockets on this edge.
    user_frame_rate: float = 200.0
    user_frame_burst: float = 400.0
    #: REST requests per second per user over all their clients on this edge
    #: (sustained, burst) before 429; a device posting once a second uses 1. 0: off.
    rest_user_rate: float = 20.0
    rest_user_burst: float = 60.0
    #: REST requests per second per client address on this edge before 429 (behind a
    #: proxy every client has the proxy's address: raise it, or 0 turns it off).
    rest_address_rate: float = 100.0
    rest_address_burst: float = 200.0
    #: Loopback peers skip the per-address limit: on 127.0.0.1 (the default listen
    #: address) the peer is a local proxy speaking for every client.
    rest_address_exempt_loopback: bool = True
    #: Sockets one user may hold on one edge before 4429.
    max_connections_per_user: int = 20
    #: Channels one socket may subscribe to.
    max_subscriptions: int = 200
    #: Entries one resume frame may replay (read from memory or Redis, over all its
    #: channels and partitions); a channel whose gap is larger is answered
    #: ``recovered: false`` with a snapshot. One frame could replay every entry kept on
    #: all partitions (5 sockets x 40 frames replayed 2.5 M events in 25 s).
    max_replay: int = 20_000
    #: Entries a user's resumes may replay per second over all their sockets on this
    #: edge (sustained, burst); a snapshot costs ``snapshot_cost`` of them. A resume
    #: while the budget is spent is refused with an ``error`` ``rate_limited`` (and
    #: ``retry_after_s``); the socket stays open.
    replay_rate: float = 5_000.0
    replay_burst: float = 50_000.0
    snapshot_cost: int = 1_000
    #: How long the producers gather records before one round trip to Redis (all
    #: partitions in one pipeline); 0: what one event-loop turn gathers. At 1,000
    #: devices posting at 1 Hz, 2 ms halved the round trips and the edge's and worker's
    #: wake-ups, and lowered the p99 on the shared cores.
    linger_ms: float = 2.0
    #: Redis connections of the edge (one is held by the tailer's blocking read, one by
    #: the presence subscription).
    redis_connections: int = 64
    #: Redis retries of a request's command (50 ms, then 100 ms apart) and the connect
    #: timeout: during a Redis outage requests fail within a second with 503 and
    #: ``Retry-After`` (the shared client options retry 5 times over 3.1 s, and a 202
    #: path with two commands took 6.2 s to fail).
    redis_retries: int = 1
    redis_connect_timeout_s: float = 0.5
    #: PostgreSQL connections of the edge.
    pg_connections: int = 10
    presence_ttl_s: float = 30.0
    #: How long after a user's last socket went their leave is announced (no flapping).
    presence_grace_s: float = 15.0
    tailer_block_ms: int = 1000
    #: Recent live events kept in memory per partition, to replay a resume without Redis.
    recent_per_partition: int = 20_000


@dataclass
class Edge:
    """Everything a handler needs, built by the cleanup contexts."""

    settings: Settings
    config: EdgeConfig
    metrics: EdgeMetrics
    verifier: TokenVerifier
    hub: Hub = field(default_factory=Hub)
    redis: aioredis.Redis | None = None
    pool: AsyncConnectionPool | None = None
    store: Store | None = None
    access: Access | None = None
    directory: Directory | None = None
    access_listener: AccessListener | None = None
    actions: Actions | None = None
    groups: GroupActions | None = None
    tailer: LiveTailer | None = None
    presence: Presence | None = None
    connections: set[Connection] = field(default_factory=set)
    per_user: dict[UserId, int] = field(default_factory=dict)
    user_buckets: dict[UserId, Any] = field(default_factory=dict)
    #: user id -> TokenBucket of replayed entries; kept after the user's last socket
    #: closes (else reconnecting would refill it), dropped by the heartbeat once full.
    replay_buckets: dict[UserId, Any] = field(default_factory=dict)
    #: backend -> the /readyz check in flight (one at a time; see readyz).
    probes: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    # The properties below fail loudly if a handler runs before start-up finished.
    def need_store(self) -> Store:
        assert self.store is not None, "edge not started"
        return self.store

    def need_access(self) -> Access:
        assert self.access is not None, "edge not started"
        return self.access

    def need_directory(self) -> Directory:
        assert self.directory is not None, "edge not started"
        return self.directory

    def known_principal(self, token: str) -> Principal | None:
        """:meth:`principal` from memory alone, without a coroutine (a device's every
        post asks); None: the token or the role is not known yet."""
        identity = self.verifier.known(token)
        return None if identity is None else self.need_directory().known(identity)

    async def principal(self, token: str) -> Principal:
        """Who a bearer token acts for, with the database's role (provisioned if new)."""
        identity = await self.verifier.verify(token)
        return await self.need_directory().principal(identity)

    def need_actions(self) -> Actions:
        assert self.actions is not None, "edge not started"
        return self.actions

    def need_groups(self) -> GroupActions:
        assert self.groups is not None, "edge not started"
        return self.groups

    def need_tailer(self) -> LiveTailer:
        assert self.tailer is not None, "edge not started"
        return self.tailer

    def need_presence(self) -> Presence:
        assert self.presence is not None, "edge not started"
        return self.presence

    def need_redis(self) -> aioredis.Redis:
        assert self.redis is not None, "edge not started"
        return self.redis


EDGE = web.AppKey("edge", Edge)
