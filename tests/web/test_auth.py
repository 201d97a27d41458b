"""TokenVerifier: what it accepts, and that remembering verified tokens changes nothing."""

from __future__ import annotations

import time

import jwt
import pytest

from pipeline.settings import Settings
from web.auth import AuthError, TokenVerifier, mint_token


def _settings(leeway_s: float = 0.0) -> Settings:
    return Settings(jwt_secret="s" * 32, jwt_leeway_s=leeway_s)


def test_a_verified_token_is_answered_the_same_from_memory() -> None:
    settings = _settings()
    verifier = TokenVerifier(settings)
    token = mint_token(settings, user_id=7, role="coach")
    first = verifier.verify(token)
    assert (first.user_id, first.role) == (7, "coach")
    assert verifier.verify(token) == first


def test_a_remembered_token_still_expires() -> None:
    settings = _settings(leeway_s=0.0)
    verifier = TokenVerifier(settings)
    now = int(time.time())
    token = jwt.encode(
        {"sub": "3", "role": "athlete", "exp": now + 1}, settings.jwt_secret_value(), "HS256"
    )
    assert verifier.verify(token).user_id == 3
    time.sleep(max(0.0, now + 1.05 - time.time()))
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)  # and again, now without the memory


def test_a_forged_signature_on_a_remembered_token_is_refused() -> None:
    settings = _settings()
    verifier = TokenVerifier(settings)
    token = mint_token(settings, user_id=5, role="athlete")
    verifier.verify(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    with pytest.raises(AuthError, match="signature"):
        verifier.verify(forged)
    other_secret = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "x" * 32)
    with pytest.raises(AuthError, match="signature"):
        verifier.verify(other_secret)
