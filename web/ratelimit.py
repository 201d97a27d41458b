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
from typing import Protocol

from aiohttp import web

from web.auth import AuthError, TokenIdentity, bearer_token
from web.connection import TokenBucket
from web.problems import Problem

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


class Verifier(Protocol):
    def known(self, token: str) -> TokenIdentity | None: ...

    async def verify(self, token: str) -> TokenIdentity: ...


class RestLimits:
    """Both limits of the REST API (per user, per address), applied by the edge's
    middleware (:mod:`web.middleware`) before a request's handler runs.

    ``exempt_loopback``: loopback peers skip the per-address limit (not the per-user
    one). ``on_limited`` is called with the scope (``user``, ``address``) of each 429.
    """

    def __init__(
        self,
        by_user: RateLimiter,
        by_address: RateLimiter,
        verifier: Verifier,
        *,
        exempt_loopback: bool = True,
        on_limited: Callable[[str], None] = lambda scope: None,
    ) -> None:
        self.by_user = by_user
        self.by_address = by_address
        self.verifier = verifier
        self.exempt_loopback = exempt_loopback
        self.on_limited = on_limited

    def check(self, request: web.Request) -> Awaitable[None] | None:
        """Raise the 429 :class:`Problem` of a request over a limit. Not a coroutine:
        a token verified before (a device's every post) is decided here (None); one
        not yet verified returns what to await for its user's limit."""
        address = request.remote or ""
        if not (self.exempt_loopback and is_loopback(address)):
            self._take(self.by_address, "address", address)
        if self.by_user.rate <= 0:
            return None
        try:
            token = bearer_token(request.headers.get("Authorization"))
        except AuthError:
            return None  # the handler answers 401
        if token is None:
            return None
        identity = self.verifier.known(token)
        if identity is None:
            return self._check_unverified(token)
        self._take(self.by_user, "user", identity.user_id)
        return None

    async def _check_unverified(self, token: str) -> None:
        try:
            identity = await self.verifier.verify(token)
        except AuthError:
            return  # the handler answers 401
        self._take(self.by_user, "user", identity.user_id)

    def _take(self, limiter: RateLimiter, scope: str, key: Hashable) -> None:
        wait = limiter.retry_after_s(key)
        if wait is not None:
            self.on_limited(scope)
            raise too_many(scope, wait)
