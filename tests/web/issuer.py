"""A host identity provider for the tests: RS256 keys by kid, their JWKS served by a
real aiohttp app on loopback, and tokens signed with them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.ids import uid

ISSUER = "https://id.host.example/"
AUDIENCE = "livecoach"


@dataclass
class Issuer:
    """An RS256 identity provider: private keys by kid, their JWKS served on loopback."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0
    url: str = ""

    def add_key(self, kid: str, *, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def token(self, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "sub": str(host_user_id(42)),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@asynccontextmanager
async def serve_issuer() -> AsyncIterator[Issuer]:
    """An issuer with one published key ``k1``, its JWKS served at ``Issuer.url``."""
    state = Issuer()
    state.add_key("k1")

    async def jwks(request: web.Request) -> web.Response:
        state.fetches += 1
        return web.json_response(state.jwks())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/.well-known/jwks.json"))
    try:
        yield state
    finally:
        await server.close()


def host_user_id(n: int) -> uuid.UUID:
    """The host's id of test user ``n``: what the issuer puts in ``sub`` (a UUID; the
    tests using it send ids as ``str(...)`` and compare answers as strings)."""
    return uid(n)
