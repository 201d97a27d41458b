"""Rate limits of the REST API: per user and per client address, as on the socket.

Each key (a user id, a client address) gets a :class:`~web.connection.TokenBucket`, the
socket's own limiter: ``rate`` requests a second sustained, ``burst`` at once. A
request over either limit is answered 429 with ``Retry-After`` (whole seconds until
a token is back) before its handler runs, so it costs no database or Redis work.

The user is the ``sub`` of the request's bearer token once verified (the verifier
caches tokens, so this is a dictionary look-up for a token seen before); a request
without a valid token counts against its address only, and its handler answers 401.
The address is the TCP peer's: behind a reverse proxy every client shares the proxy's,
so the per-address limit would hold all clients to one client's rate. Loopback peers
are therefore exempt by default (the edge listens on 127.0.0.1 by default, behind a
proxy on the same machine); a proxy elsewhere needs the limit raised or turned off
(rate 0), and limits of its own. The WebSocket upgrade is not counted here: sockets
have their own limits.

Limits are per edge: with N edges behind a balancer a client may get up to N times
the rate. Bucket tables are bounded (:data:`MAX_KEYS`); idle keys are dropped first.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from aiohttp import web

from web.auth import AuthError, TokenIdentity, bearer_token
from web.connection import TokenBucket
from web.problems import Problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Verify = Callable[[str], Awaitable[TokenIdentity]]

#: Keys a limiter tracks before it forgets idle ones (a few hundred bytes each).
MAX_KEYS = 50_000


class RateLimiter:
    """Token buckets by key; ``rate <= 0`` turns the limit off."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._buckets: dict[Hashable, TokenBucket] = {}

    def retry_after_s(self, key: Hashable) -> float | None:
        """None if ``key`` may go on (a token is taken); else the seconds to wait."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_idle(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        if bucket.take(now):
            return None
        return (1.0 - bucket.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        refill_s = self.burst / self.rate
        idle = [k for k, b in self._buckets.items() if now - b.stamp >= refill_s]
        for key in idle:  # full again: forgetting them changes nothing
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()  # crude but bounded: a flood of fresh keys

    def __len__(self) -> int:
        return len(self._buckets)


def too_many(scope: str, wait_s: float) -> Problem:
    seconds = max(1, math.ceil(wait_s))
    return Problem(
        429,
        "Too Many Requests",
        f"rate limit per {scope} exceeded; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


@functools.lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    """A loopback peer (or a Unix socket, which has no address). Cached: parsing the
    address took 2 % of the edge's CPU in `bench e2e`, asked at every request."""
    if not address:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def make_rate_limit_middleware(
    by_user: RateLimiter,
    by_address: RateLimiter,
    verify: Verify,
    *,
    counted: Callable[[str], bool],
    exempt_loopback: bool = True,
    on_limited: Callable[[str], None] = lambda scope: None,
) -> Any:
    """A middleware applying both limits to the requests whose path ``counted`` accepts.

    ``exempt_loopback``: loopback peers skip the per-address limit (not the per-user
    one). Install it inside the problem middleware, which turns its :class:`Problem`
    into the 429 response.
    """

    async def user_of(request: web.Request) -> Hashable | None:
        try:
            token = bearer_token(request.headers.get("Authorization"))
            if token is None:
                return None
            return (await verify(token)).user_id
        except AuthError:
            return None  # the handler answers 401

    @web.middleware
    def rate_limits(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        # Not a coroutine: a request it does not count (a WebSocket's, for the socket's
        # whole life) is handed on without a suspended frame of this middleware (~300 B
        # per idle socket).
        if not counted(request.path):
            return handler(request)
        return limited(request, handler)

    async def limited(request: web.Request, handler: Handler) -> web.StreamResponse:
        address = request.remote or ""
        wait = None
        if not (exempt_loopback and is_loopback(address)):
            wait = by_address.retry_after_s(address)
        if wait is not None:
            on_limited("address")
            raise too_many("address", wait)
        user = await user_of(request) if by_user.rate > 0 else None
        if user is not None:
            wait = by_user.retry_after_s(user)
            if wait is not None:
                on_limited("user")
                raise too_many("user", wait)
        return await handler(request)

    return rate_limits
