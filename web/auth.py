"""JWT tokens: minting (for demos and tests) and verification.

Claims: ``sub`` (user id, a decimal string), ``role`` (``athlete`` or ``coach``),
``exp`` (required), ``iat``. Accepted signatures: HS256 with the shared secret from the
settings, and RS256/ES256 with the public keys of the JWKS file named by
``LIVECOACH_JWT_JWKS_FILE`` (picked by the token's ``kid``, or tried in turn when the
token has none). ``LIVECOACH_JWT_LEEWAY_S`` allows for clock skew on ``exp``/``iat``.

:class:`TokenVerifier` is built once per app; :class:`AuthError` carries a short reason
that is safe to show the client (never the token itself).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from pipeline.settings import Settings

Role = Literal["athlete", "coach"]
ROLES: tuple[Role, ...] = ("athlete", "coach")
HS256 = "HS256"
_ASYMMETRIC = ("RS256", "ES256")


class AuthError(Exception):
    """A token is missing, malformed, badly signed or expired (401 / close 4401)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: int
    role: Role
    expires_at: float

    @property
    def is_coach(self) -> bool:
        return self.role == "coach"


def mint_token(settings: Settings, *, user_id: int, role: Role, ttl_s: int = 3600) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if ttl_s <= 0:
        raise ValueError(f"ttl must be positive, got {ttl_s}")
    now = int(time.time())
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, settings.jwt_secret_value(), algorithm=HS256)


@dataclass(frozen=True)
class _PublicKey:
    kid: str | None
    algorithm: str
    key: Any


def load_jwks(text: str) -> list[_PublicKey]:
    """The RS256/ES256 public keys of a JWKS document (other key types are skipped)."""
    data = json.loads(text)
    keys: list[_PublicKey] = []
    for jwk in data.get("keys", []):
        kty = jwk.get("kty")
        if kty == "RSA":
            keys.append(_PublicKey(jwk.get("kid"), "RS256", RSAAlgorithm.from_jwk(jwk)))
        elif kty == "EC":
            keys.append(_PublicKey(jwk.get("kid"), "ES256", ECAlgorithm.from_jwk(jwk)))
    return keys


#: Verified tokens remembered (about 0.5 KB each); the memory is dropped when full.
VERIFIED_TOKENS_KEPT = 20_000


class TokenVerifier:
    """Verifies bearer tokens against the configured secret and JWKS keys."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret_value()
        self._leeway_s = settings.jwt_leeway_s
        self._keys: list[_PublicKey] = []
        self._verified: dict[str, Principal] = {}
        if settings.jwt_jwks_file is not None:
            # Read at start-up so that a missing or broken file fails the edge early.
            self._keys = load_jwks(settings.jwt_jwks_file.read_text())

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthError naming what is wrong otherwise.

        A token verified before is answered from memory until it expires: a device
        presents the same token with every post, and checking its signature again
        (base64, JSON and an HMAC, RSA or EC verification) cost more than the rest of
        accepting a sample. The cache is keyed by the whole token, signature included,
        so only a token that passed verification is ever found in it.
        """
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known.expires_at + self._leeway_s:
                return known
            del self._verified[token]
            raise AuthError("token expired")
        principal = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if alg == HS256:
            candidates: list[tuple[Any, str]] = [(self._secret, HS256)]
        elif alg in _ASYMMETRIC:
            kid = header.get("kid")
            candidates = [
                (k.key, k.algorithm)
                for k in self._keys
                if k.algorithm == alg and (kid is None or k.kid == kid)
            ]
            if not candidates:
                raise AuthError(f"no key for a {alg} token" + (f" with kid {kid!r}" if kid else ""))
        else:
            raise AuthError(f"unsupported algorithm {alg!r}")
        claims: dict[str, Any] | None = None
        problem = "bad signature"
        for key, algorithm in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    leeway=self._leeway_s,
                    options={"require": ["sub", "exp"]},
                )
                break
            except jwt.ExpiredSignatureError:
                raise AuthError("token expired") from None
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                problem = f"invalid token: {exc}"
                break
        if claims is None:
            raise AuthError(problem)
        return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    try:
        user_id = int(str(sub))
    except ValueError:
        raise AuthError(f"sub must be a user id, got {sub!r}") from None
    role = claims.get("role")
    if role not in ROLES:
        raise AuthError(f"role must be athlete or coach, got {role!r}")
    return Principal(user_id=user_id, role=role, expires_at=float(claims["exp"]))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'")
    return token.strip()
