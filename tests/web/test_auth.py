"""TokenVerifier: what it accepts and refuses, and the issuer's keys from a JWKS URL
served by a real aiohttp app on loopback (fetched, cached, refreshed on a new kid,
rate-limited)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings
from tests.ids import sid, uid
from tests.web.issuer import AUDIENCE, ISSUER, Issuer
from web.auth import AuthError, TokenVerifier, mint_token
from web.jwks import JwksUnavailable


def _settings(**overrides: Any) -> Settings:
    return Settings(**{"jwt_secret": "s" * 32, "jwt_leeway_s": 0.0, **overrides})


def _rs_settings(issuer: Issuer, **overrides: Any) -> Settings:
    return _settings(
        jwt_jwks_url=issuer.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms="RS256",
        **overrides,
    )


async def test_a_verified_token_is_answered_the_same_from_memory() -> None:
    settings = _settings()
    verifier = TokenVerifier(settings)
    token = mint_token(settings, user_id=uid(7), role="coach", name="Ann")
    first = await verifier.verify(token)
    assert (first.user_id, first.role_hint, first.name_hint) == (uid(7), "coach", "Ann")
    assert await verifier.verify(token) == first


async def test_a_remembered_token_still_expires() -> None:
    settings = _settings()
    verifier = TokenVerifier(settings)
    now = int(time.time())
    token = jwt.encode({"sub": sid(3), "exp": now + 1}, settings.jwt_secret_value(), "HS256")
    assert (await verifier.verify(token)).user_id == uid(3)
    await asyncio.sleep(max(0.0, now + 1.05 - time.time()))
    with pytest.raises(AuthError, match="expired"):
        await verifier.verify(token)
    with pytest.raises(AuthError, match="expired"):
        await verifier.verify(token)  # and again, now without the memory


async def test_a_forged_signature_on_a_remembered_token_is_refused() -> None:
    settings = _settings()
    verifier = TokenVerifier(settings)
    token = mint_token(settings, user_id=uid(5), role="athlete")
    await verifier.verify(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    with pytest.raises(AuthError, match="signature"):
        await verifier.verify(forged)
    other_secret = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "x" * 32)
    with pytest.raises(AuthError, match="signature"):
        await verifier.verify(other_secret)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "someone-else"}, "wrong audience: expected 'livecoach'"),
        ({"iss": "https://evil.example/"}, "wrong issuer: expected 'https://id.host.example/'"),
        ({"aud": None}, "no 'aud' claim"),
        ({"iss": None}, "no 'iss' claim"),
        ({"sub": "not-a-number"}, "sub: expected a user id"),
        ({"exp": int(time.time()) - 5}, "expired"),
    ],
)
async def test_rs256_tokens_with_a_wrong_claim_are_refused_with_the_reason(
    issuer: Issuer, claims: dict[str, Any], reason: str
) -> None:
    verifier = TokenVerifier(_rs_settings(issuer))
    assert (await verifier.verify(issuer.token())).user_id == uid(42)
    with pytest.raises(AuthError, match=reason):
        await verifier.verify(issuer.token(**claims))
    await verifier.aclose()


async def test_a_token_with_an_aud_is_refused_when_no_audience_is_configured() -> None:
    settings = _settings()
    token = jwt.encode(
        {"sub": sid(1), "aud": "x", "exp": int(time.time()) + 60}, settings.jwt_secret_value()
    )
    with pytest.raises(AuthError, match="no audience configured"):
        await TokenVerifier(settings).verify(token)


async def test_maximum_lifetime_refuses_long_lived_and_iat_less_tokens(issuer: Issuer) -> None:
    verifier = TokenVerifier(_rs_settings(issuer, jwt_max_lifetime_s=3600))
    now = int(time.time())
    assert (await verifier.verify(issuer.token(iat=now - 3000, exp=now + 600))).user_id == uid(42)
    with pytest.raises(AuthError, match="lifetime 7800 s exceeds the maximum of 3600 s"):
        await verifier.verify(issuer.token(iat=now - 7200, exp=now + 600))
    with pytest.raises(AuthError, match="no 'iat' claim"):
        await verifier.verify(issuer.token(iat=None))
    await verifier.aclose()


async def test_algorithms_outside_the_list_are_refused(issuer: Issuer) -> None:
    settings = _rs_settings(issuer)
    verifier = TokenVerifier(settings)  # RS256 only: the shared secret is not accepted
    hs = jwt.encode(
        {"sub": sid(1), "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, "s" * 32
    )
    with pytest.raises(AuthError, match="algorithm 'HS256' not accepted"):
        await verifier.verify(hs)
    unsigned = jwt.encode({"sub": sid(1), "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthError, match="algorithm 'none' not accepted"):
        await verifier.verify(unsigned)
    await verifier.aclose()


async def test_jwks_is_fetched_once_and_refetched_for_a_rotated_key(issuer: Issuer) -> None:
    verifier = TokenVerifier(_rs_settings(issuer, jwt_jwks_min_refresh_s=0.0))
    for sub in (sid(1), sid(2), sid(3)):
        await verifier.verify(issuer.token(sub=sub))
    assert issuer.fetches == 1
    issuer.add_key("k2")  # the issuer rotates: a new kid appears in its JWKS
    assert (await verifier.verify(issuer.token(kid="k2", sub=sid(4)))).user_id == uid(4)
    assert issuer.fetches == 2
    await verifier.aclose()


async def test_unknown_kids_refetch_at_most_once_per_interval(issuer: Issuer) -> None:
    verifier = TokenVerifier(_rs_settings(issuer, jwt_jwks_min_refresh_s=60.0))
    await verifier.verify(issuer.token())
    issuer.add_key("ghost", publish=False)  # a kid the issuer never published
    for _ in range(20):
        with pytest.raises(AuthError, match="no key for a RS256 token with kid 'ghost'"):
            await verifier.verify(issuer.token(kid="ghost"))
    assert issuer.fetches == 1  # the first fetch was under a minute ago: no refetch
    await verifier.aclose()


async def test_an_unreachable_jwks_url_is_a_service_failure_not_a_401(tmp_path: Path) -> None:
    settings = _settings(
        jwt_jwks_url="http://127.0.0.1:9/jwks.json", jwt_algorithms="RS256", jwt_audience="a"
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": sid(1), "exp": int(time.time()) + 60}, key, "RS256", {"kid": "k"})
    verifier = TokenVerifier(settings)
    for _ in range(3):  # the first fetches; the next, within a second, do not: still 503
        with pytest.raises(JwksUnavailable):
            await verifier.verify(token)
    assert verifier.keys.fetches == 1
    await verifier.aclose()


async def test_a_jwks_file_still_works_and_symmetric_keys_in_it_are_ignored(
    tmp_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    secret = "t" * 32
    oct_jwk = {"kty": "oct", "kid": "hs", "k": jwt.utils.base64url_encode(secret.encode()).decode()}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "ec1"}, oct_jwk]}))
    verifier = TokenVerifier(_settings(jwt_jwks_file=path, jwt_algorithms="ES256,HS256"))
    now = int(time.time())
    es = jwt.encode({"sub": sid(8), "exp": now + 60}, key, "ES256", {"kid": "ec1"})
    assert (await verifier.verify(es)).user_id == uid(8)
    # An HS256 token signed with the JWKS's symmetric key is checked against the
    # configured secret only, so it fails.
    hs = jwt.encode({"sub": sid(9), "exp": now + 60}, secret, "HS256", {"kid": "hs"})
    with pytest.raises(AuthError, match="signature"):
        await verifier.verify(hs)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("jwt_algorithms", "RS256,none", "unsupported algorithm 'none'"),
        ("jwt_jwks_url", "ftp://x/jwks", "expected an https:// (or http://) URL"),
        ("jwt_max_lifetime_s", "0", "greater than 0"),
    ],
)
def test_bad_token_settings_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{variable: value})
    assert caught.value.variable == f"LIVECOACH_{variable.upper()}"
    assert message in caught.value.problem
