"""JWT tokens: minting (for demos and tests) and verification.

Claims: ``sub`` (user id, a string), ``role`` (``athlete`` or ``coach``), ``exp``,
``iat``. HS256 with the shared secret from the settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jwt

from pipeline.settings import Settings

Role = Literal["athlete", "coach"]
ROLES: tuple[Role, ...] = ("athlete", "coach")
HS256 = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: int
    role: Role
    expires_at: float


def mint_token(settings: Settings, *, user_id: int, role: Role, ttl_s: int = 3600) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if ttl_s <= 0:
        raise ValueError(f"ttl must be positive, got {ttl_s}")
    now = int(time.time())
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, settings.jwt_secret_value(), algorithm=HS256)
