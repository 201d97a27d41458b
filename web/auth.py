"""JWT tokens: minting (for demos and tests) and verification.

A token says who its bearer is: ``sub`` (the host's user id, read by
:func:`pipeline.users.parse_user_id`) and ``exp`` are required; ``iss`` must equal
``LIVECOACH_JWT_ISSUER`` when that is set; ``aud`` must name ``LIVECOACH_JWT_AUDIENCE``
when that is set (and a token with an ``aud`` is refused when it is not: RFC 7519
4.1.3); with ``LIVECOACH_JWT_MAX_LIFETIME_S``, ``iat`` is required, ``exp - iat`` may not
exceed it and a token is refused once it is older than that. The algorithm must be one
of ``LIVECOACH_JWT_ALGORITHMS``: HS256 with the shared secret (demos), the others with
the issuer's keys (:class:`web.jwks.JwksKeys`: a JWKS file or URL).

What the bearer may do is not the token's business: the role claim
(``LIVECOACH_JWT_ROLE_CLAIM``) and the name claim are only hints for provisioning a new
user (:class:`TokenIdentity`); :class:`Principal`'s role comes from the database
(:mod:`web.directory`).

:class:`TokenVerifier` is built once per app; :class:`AuthError` carries a short reason
that is safe to show the client (never the token itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from pipeline.settings import Settings
from pipeline.users import ROLES, Role, UserId, parse_user_id
from web.errors import EdgeError
from web.jwks import JwksKeys

HS256 = "HS256"

__all__ = [
    "ROLES",
    "AuthError",
    "Principal",
    "Role",
    "TokenIdentity",
    "TokenVerifier",
    "bearer_token",
    "mint_token",
]


class AuthError(EdgeError):
    """A token is missing, malformed, badly signed or expired (401 / close 4401)."""


@dataclass(frozen=True)
class TokenIdentity:
    """What a verified token says: who, until when, and hints for provisioning."""

    user_id: UserId
    #: The token's ``exp`` (epoch s). With a maximum lifetime, ``exp - iat`` is at most
    #: that, so a token older than the maximum has expired too.
    expires_at: float
    role_hint: Any = None
    name_hint: Any = None


@dataclass(frozen=True)
class Principal:
    """Who a request or socket acts for, with the role the database gives them."""

    user_id: UserId
    role: Role
    expires_at: float

    @property
    def is_coach(self) -> bool:
        return self.role == "coach"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def mint_token(
    settings: Settings,
    *,
    user_id: UserId,
    role: Role | None = None,
    ttl_s: int = 3600,
    name: str | None = None,
) -> str:
    """An HS256 token for demos and tests, with the configured ``iss`` and ``aud``.

    ``role`` and ``name`` go into the configured claims; they only matter the first
    time livecoach sees the user (provisioning).
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if ttl_s <= 0:
        raise ValueError(f"ttl must be positive, got {ttl_s}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "iat": now, "exp": now + ttl_s}
    if role is not None:
        claims[settings.jwt_role_claim] = role
    if name is not None:
        claims[settings.jwt_name_claim] = name
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret_value(), algorithm=HS256)


#: Verified tokens remembered (about 0.5 KB each); the memory is dropped when full.
VERIFIED_TOKENS_KEPT = 20_000


class TokenVerifier:
    """Verifies bearer tokens against the configured secret and the issuer's keys."""

    def __init__(self, settings: Settings) -> None:
        self._algorithms = settings.jwt_algorithms
        self._secret = settings.jwt_secret_value() if HS256 in self._algorithms else None
        self._leeway_s = settings.jwt_leeway_s
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._max_lifetime_s = settings.jwt_max_lifetime_s
        self._role_claim = settings.jwt_role_claim
        self._name_claim = settings.jwt_name_claim
        self.keys = JwksKeys(
            file=settings.jwt_jwks_file,
            url=settings.jwt_jwks_url,
            max_age_s=settings.jwt_jwks_max_age_s,
            min_refresh_s=settings.jwt_jwks_min_refresh_s,
        )
        self._verified: dict[str, TokenIdentity] = {}

    def known(self, token: str) -> TokenIdentity | None:
        """The identity of a token verified before and not expired, without a coroutine
        (every request of a device asks); None: :meth:`verify` decides."""
        known = self._verified.get(token)
        if known is not None and time.time() <= known.expires_at + self._leeway_s:
            return known
        return None

    async def verify(self, token: str) -> TokenIdentity:
        """The identity of a valid token; AuthError naming what is wrong otherwise.

        A token verified before is answered from memory until it expires: a device
        presents the same token with every post, and checking its signature again
        (base64, JSON and an HMAC, RSA or EC verification) cost more than the rest of
        accepting a sample. The cache is keyed by the whole token, signature included,
        so only a token that passed verification is ever found in it.
        """
        known = self.known(token)
        if known is not None:
            return known
        if self._verified.pop(token, None) is not None:  # verified once, expired since
            raise AuthError("token expired")
        identity = await self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()
        self._verified[token] = identity
        return identity

    async def _verify(self, token: str) -> TokenIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError(
                f"algorithm {alg!r} not accepted; expected one of {', '.join(self._algorithms)}"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("malformed token: kid must be a string")
        if alg == HS256:
            assert self._secret is not None
            keys: list[Any] = [self._secret]
        else:
            keys = [k.key for k in await self.keys.candidates(alg, kid)]
            if not keys:
                raise AuthError(f"no key for a {alg} token" + (f" with kid {kid!r}" if kid else ""))
        required = ["sub", "exp"] + (["iat"] if self._max_lifetime_s is not None else [])
        claims: dict[str, Any] | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    leeway=self._leeway_s,
                    issuer=self._issuer,
                    audience=self._audience,
                    options={"require": required},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise AuthError(self._reason(exc)) from None
        if claims is None:
            raise AuthError("bad signature")
        return self._identity(claims)

    def _reason(self, exc: jwt.PyJWTError) -> str:
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "token expired"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"token has no {exc.claim!r} claim"
        if isinstance(exc, jwt.InvalidAudienceError):
            if self._audience is None:
                return "token has an 'aud' claim but this service has no audience configured"
            return f"wrong audience: expected {self._audience!r}"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"wrong issuer: expected {self._issuer!r}"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "token not valid yet (nbf or iat in the future)"
        return f"invalid token: {exc}"

    def _identity(self, claims: dict[str, Any]) -> TokenIdentity:
        try:
            user_id = parse_user_id(claims.get("sub"))
        except ValueError as exc:
            raise AuthError(f"sub: {exc}") from None
        try:
            expires_at = float(claims["exp"])
        except (TypeError, ValueError):
            raise AuthError("exp: expected a number") from None
        if self._max_lifetime_s is not None:
            issued_at = float(claims["iat"])  # PyJWT checked it is a number
            lifetime = expires_at - issued_at
            if lifetime > self._max_lifetime_s:
                raise AuthError(
                    f"token lifetime {lifetime:.0f} s exceeds the maximum of"
                    f" {self._max_lifetime_s:.0f} s"
                )
        return TokenIdentity(
            user_id=user_id,
            expires_at=expires_at,
            role_hint=claims.get(self._role_claim),
            name_hint=claims.get(self._name_claim),
        )

    async def aclose(self) -> None:
        await self.keys.aclose()


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'")
    return token.strip()
