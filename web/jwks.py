"""The issuer's public keys: a JWKS file read at start, and/or a JWKS URL fetched,
cached and refreshed without blocking the event loop.

Why not PyJWT's ``PyJWKClient``: it fetches with ``urllib`` (blocking: a slow issuer
would stall every socket of the edge unless each call went to a thread) and refetches
on every unknown ``kid`` with no limit, so a client sending random ``kid`` values makes
the edge hammer the issuer. Here the fetch is an aiohttp request; concurrent callers
share one fetch; a refetch for an unknown ``kid`` happens at most once every
``min_refresh_s``; keys older than ``max_age_s`` are refetched, and kept (with a
warning) if the issuer cannot be reached. PyJWT still parses the keys
(:class:`jwt.PyJWKSet`) and verifies the signatures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from pipeline.errors import ServiceError

log = logging.getLogger(__name__)

#: Key type (``kty``) of each algorithm family.
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_FETCH_TIMEOUT_S = 5.0
_MAX_JWKS_BYTES = 1024 * 1024


class JwksUnavailable(ServiceError):
    """The issuer's JWKS URL could not be fetched or parsed (503: retry later)."""

    backend = "jwks"


@dataclass(frozen=True)
class PublicKey:
    kid: str | None
    kty: str
    #: The ``alg`` the JWK declares, if it does (then only that algorithm may use it).
    alg: str | None
    key: Any

    def fits(self, alg: str, kid: str | None) -> bool:
        if kid is not None and self.kid != kid:
            return False
        if self.alg is not None:
            return self.alg == alg
        return self.kty == _KTY.get(alg[:2])


def parse_jwks(text: str | bytes) -> list[PublicKey]:
    """The usable public keys of a JWKS document; others (symmetric ``oct`` keys,
    encryption keys, types PyJWT cannot use) are skipped."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("expected a JWKS document: {'keys': [...]}")
    keys: list[PublicKey] = []
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or jwk.get("kty") == "oct":
            continue
        try:
            parsed = jwt.PyJWK(jwk)
        except jwt.PyJWTError as exc:
            log.info("JWKS key %r skipped: %s", jwk.get("kid"), exc)
            continue
        alg = jwk.get("alg")
        keys.append(
            PublicKey(
                parsed.key_id, str(jwk["kty"]), alg if isinstance(alg, str) else None, parsed.key
            )
        )
    return keys


class JwksKeys:
    """Public keys by ``kid`` and algorithm, from a file and/or a URL."""

    def __init__(
        self,
        *,
        file: Path | None = None,
        url: str | None = None,
        max_age_s: float = 3600.0,
        min_refresh_s: float = 30.0,
    ) -> None:
        # The file is read now so that a missing or broken file fails the edge early.
        self._static = parse_jwks(file.read_text()) if file is not None else []
        self._url = url
        self._max_age_s = max_age_s
        self._min_refresh_s = min_refresh_s
        self._fetched: list[PublicKey] = []
        self._fetched_at = -float("inf")  # monotonic time of the last successful fetch
        self._tried_at = -float("inf")  # monotonic time of the last attempt
        self._pending: asyncio.Future[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.fetches = 0

    async def candidates(self, alg: str, kid: str | None) -> list[PublicKey]:
        """Keys that may have signed a token with this header; fetched when needed."""
        if self._url is not None:
            now = time.monotonic()
            stale = now - self._fetched_at > self._max_age_s
            if stale and now - self._tried_at >= min(self._min_refresh_s, 1.0):
                await self._refresh(required=not self._fetched)
        found = self._match(alg, kid)
        if not found and self._url is not None and not self._fetched:
            # Never fetched (the issuer is down, and the last attempt was under a second
            # ago): the token cannot be judged, which is the service's failure, not the
            # token's (503, not 401: a client must not throw its token away).
            raise JwksUnavailable(f"JWKS {self._url}: no keys fetched yet")
        if found or self._url is None or kid is None:
            return found
        # An unknown kid: the issuer may have rotated its keys. Refetch, but not more
        # often than min_refresh_s, whatever kids clients make up.
        if time.monotonic() - self._tried_at >= self._min_refresh_s:
            await self._refresh(required=False)
            found = self._match(alg, kid)
        return found

    def _match(self, alg: str, kid: str | None) -> list[PublicKey]:
        return [k for k in (*self._static, *self._fetched) if k.fits(alg, kid)]

    async def _refresh(self, *, required: bool) -> None:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch())
            self._pending.add_done_callback(self._clear_pending)
        try:
            await asyncio.shield(self._pending)
        except JwksUnavailable:
            if required:
                raise
            log.warning("JWKS refresh from %s failed; using the keys fetched before", self._url)

    def _clear_pending(self, future: asyncio.Future[None]) -> None:
        self._pending = None
        if not future.cancelled():
            future.exception()  # retrieved here so a failure nobody awaits is not logged

    async def _fetch(self) -> None:
        assert self._url is not None
        self._tried_at = time.monotonic()
        self.fetches += 1
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_FETCH_TIMEOUT_S)
            )
        try:
            async with self._http.get(self._url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise JwksUnavailable(f"JWKS {self._url}: HTTP {resp.status}")
                body = await resp.content.read(_MAX_JWKS_BYTES + 1)
            if len(body) > _MAX_JWKS_BYTES:
                raise JwksUnavailable(f"JWKS {self._url}: over {_MAX_JWKS_BYTES} bytes")
            keys = parse_jwks(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise JwksUnavailable(f"JWKS {self._url}: {type(exc).__name__}: {exc}") from exc
        self._fetched = keys
        self._fetched_at = time.monotonic()
        log.info("JWKS %s: %d key(s): %s", self._url, len(keys), [k.kid for k in keys])

    async def aclose(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._http is not None:
            await self._http.close()


__all__ = ["JwksKeys", "JwksUnavailable", "PublicKey", "parse_jwks"]
