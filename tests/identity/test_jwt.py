"""Bearer JWTs against a local JWKS server: what verifies, what is refused and with which code."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from gatekeeper.contract import KycLevel
from gatekeeper.errors import AuthenticationError, IdentityError
from gatekeeper.identity import JwksCache, JwtVerifier, looks_like_jwt, subject_from_claims
from gatekeeper.settings import JwtClaimSettings, JwtSettings, Settings
from tests.jwks import AUDIENCE, ISSUER, IdentityProvider, unsigned_token


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.new_key("k1")
    provider.new_key("k-ec", "ES256")
    provider.new_key("k-unpublished", publish=False)
    with provider.serve():
        yield provider


def settings_for(url: str, **overrides: Any) -> JwtSettings:
    return JwtSettings(
        jwks_url=url, issuer=ISSUER, audience=[AUDIENCE], jwks_min_fetch_interval=0, **overrides
    )


@pytest.fixture
async def verifier(idp: IdentityProvider) -> Any:
    v = JwtVerifier(settings_for(idp.url))
    yield v
    await v.aclose()


def forged_hs256(idp: IdentityProvider) -> str:
    """HS256 signed with the RSA public key's PEM as the secret: the classic confusion."""
    from cryptography.hazmat.primitives import serialization

    pem = (
        idp.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**33}).encode())
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def tampered(token: str) -> str:
    """The token with one character of its signature changed."""
    swap = "A" if token[-10] != "A" else "B"
    return token[:-10] + swap + token[-9:]


REFUSALS: list[tuple[str, Any, str, str]] = [
    ("expired", lambda p: p.token("k1", sub="u", expires_in=-120), "token_expired", "expired"),
    ("wrong-audience", lambda p: p.token("k1", sub="u", audience="other"), "invalid_token", "aud"),
    (
        "wrong-issuer",
        lambda p: p.token("k1", sub="u", issuer="https://evil/"),
        "invalid_token",
        "iss",
    ),
    ("bad-signature", lambda p: tampered(p.token("k1", sub="u")), "invalid_token", "signature"),
    ("alg-none", lambda p: unsigned_token(sub="u"), "invalid_token", "algorithm"),
    ("hs256-with-public-key", forged_hs256, "invalid_token", "algorithm"),
    ("unknown-kid", lambda p: p.token("k-unpublished", sub="u"), "invalid_token", "key"),
    ("no-subject", lambda p: p.token("k1"), "invalid_token", "sub"),
    ("malformed", lambda p: "eyJhbGciOi.eyJzdWIi.xx", "invalid_token", "malformed"),
]


@pytest.mark.parametrize(
    ("make", "code", "says"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_refused_tokens_say_why(
    idp: IdentityProvider, verifier: JwtVerifier, make: Any, code: str, says: str, caplog: Any
) -> None:
    token = make(idp)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as refused:
        await verifier.subject(token)
    assert refused.value.code == code
    assert refused.value.status == 401
    assert says in str(refused.value).lower() or says in refused.value.code
    # Neither the token nor its signature reaches the message or the log.
    signature = token.split(".")[-1]
    for text in (str(refused.value), caplog.text):
        assert token not in text
        assert not signature or signature not in text


async def test_a_valid_token_gives_its_mapped_subject(
    idp: IdentityProvider, verifier: JwtVerifier
) -> None:
    token = idp.token(
        "k1",
        sub="user-1",
        org="acme",
        tier="enterprise",
        kyc_level="business",
        account_created="2024-03-15",
        flags=["beta"],
        payment_fingerprint="pf-1",
    )
    subject = await verifier.subject(token)
    assert (subject.id, subject.org, subject.tier) == ("user-1", "acme", "enterprise")
    assert subject.kyc_level is KycLevel.BUSINESS and subject.kyc_rank == 5
    assert subject.account_created == "2024-03-15" and subject.account_age_days
    assert subject.flags == ["beta"] and subject.payment_fingerprint == "pf-1"


async def test_ec_keys_verify_too(idp: IdentityProvider, verifier: JwtVerifier) -> None:
    assert (await verifier.subject(idp.token("k-ec", sub="e"))).id == "e"


async def test_clock_skew_within_leeway_is_accepted(
    idp: IdentityProvider, verifier: JwtVerifier
) -> None:
    assert (await verifier.subject(idp.token("k1", sub="u", expires_in=-10))).id == "u"


def test_claims_mapping_with_namespaced_and_nested_claims() -> None:
    mapping = JwtClaimSettings(
        subject="uid",
        tier="https://api.test/tier",
        kyc_level="verification.level",
        flags="scope",
        org="",
    )
    claims = {
        "uid": 42,
        "https://api.test/tier": "pro",
        "verification": {"level": "government_id"},
        "scope": "read write",
        "org": "ignored",
        "account_created": 1_700_000_000,
    }
    subject = subject_from_claims(claims, mapping)
    assert (subject.id, subject.tier, subject.kyc_level) == ("42", "pro", KycLevel.GOVERNMENT_ID)
    assert subject.flags == ["read", "write"] and subject.org is None
    assert subject.account_created == "2023-11-14"


def test_missing_or_unknown_claims_take_the_weakest_defaults() -> None:
    subject = subject_from_claims({"sub": "u", "kyc_level": "god"}, JwtClaimSettings())
    assert (subject.tier, subject.kyc_level, subject.flags) == ("free", KycLevel.NONE, [])


@pytest.mark.parametrize(
    ("credential", "expected"),
    [("gk-demo-free", False), (unsigned_token(sub="u"), True), ("a.b.c", False), ("eyJ", False)],
    ids=["api-key", "jwt", "dots", "prefix-only"],
)
def test_looks_like_jwt(credential: str, expected: bool) -> None:
    assert looks_like_jwt(credential) is expected


@pytest.mark.parametrize(
    "jwt_settings",
    [
        {"jwks_url": "http://x", "issuer": "i", "audience": ["a"], "algorithms": ["none"]},
        {"jwks_url": "http://x", "issuer": "i", "audience": ["a"], "algorithms": ["HS256"]},
        {"secret": "s", "issuer": "i", "audience": ["a"], "algorithms": ["RS256"]},
        {"jwks_url": "http://x", "audience": ["a"]},
        {"jwks_url": "http://x", "issuer": "i"},
        {"issuer": "i", "audience": ["a"]},
    ],
    ids=["alg-none", "hs-with-jwks", "rs-with-secret", "no-issuer", "no-audience", "no-key"],
)
def test_unsafe_or_incomplete_jwt_settings_are_refused(jwt_settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(identity={"methods": ["jwt"], "jwt": jwt_settings})


async def test_shared_secret_tokens() -> None:
    verifier = JwtVerifier(
        JwtSettings(secret="s" * 32, issuer=ISSUER, audience=[AUDIENCE], algorithms=["HS256"])
    )
    good = jwt.encode({"sub": "u", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**33}, "s" * 32)
    bad = jwt.encode({"sub": "u", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**33}, "t" * 32)
    assert (await verifier.subject(good)).id == "u"
    with pytest.raises(AuthenticationError, match="signature"):
        await verifier.subject(bad)


# --- the JWKS cache: rotation, refresh, the endpoint down ----------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    p = IdentityProvider()
    p.new_key("a")
    with p.serve():
        yield p


def cache_for(p: IdentityProvider, clock: Clock, **kwargs: Any) -> JwksCache:
    options: dict[str, Any] = {"refresh_seconds": 60, "max_stale_seconds": 600}
    options |= {"min_fetch_interval": 10, "timeout": 1}
    return JwksCache(p.url, algorithms=["RS256"], clock=clock, **options | kwargs)


async def test_keys_are_fetched_once_then_served_from_the_cache(provider: IdentityProvider) -> None:
    clock = Clock()
    cache = cache_for(provider, clock)
    await cache.prefetch()
    for _ in range(5):
        await cache.key("a")
    assert provider.fetches == 1
    await cache.aclose()


async def test_an_unknown_kid_refetches_once_per_interval(provider: IdentityProvider) -> None:
    clock = Clock()
    cache = cache_for(provider, clock)
    await cache.prefetch()
    provider.new_key("b")  # rotation: the provider publishes a new key
    clock.now += 11
    assert await cache.key("b")
    assert provider.fetches == 2
    # A made-up kid: one fetch, then 401s without fetching until the interval passed.
    clock.now += 11
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            await cache.key("nope")
    assert provider.fetches == 3
    await cache.aclose()


async def test_stale_keys_keep_working_while_the_endpoint_is_down(
    provider: IdentityProvider,
) -> None:
    clock = Clock()
    cache = cache_for(provider, clock)
    await cache.prefetch()
    provider.status = 503
    clock.now += 61  # past the refresh time: a background refetch starts, and fails
    assert await cache.key("a")
    assert cache._fetching is not None
    await cache._fetching
    assert (await cache.health()).detail["status"] == "degraded"
    assert await cache.key("a")  # still verifying with the cached key
    clock.now += 20
    with pytest.raises(IdentityError):  # a key it never had: 503, not 401
        await cache.key("new")
    clock.now += 600  # past the stale window: nothing cached can be trusted
    with pytest.raises(IdentityError):
        await cache.key("a")
    provider.status = 200
    clock.now += 11
    assert await cache.key("a")
    assert (await cache.health()).detail["status"] == "ok"
    await cache.aclose()


async def test_a_refused_connection_is_identity_unavailable() -> None:
    p = IdentityProvider()
    p.new_key("a")
    with p.serve():
        pass  # stopped: nothing listens there any more
    cache = cache_for(p, Clock())
    await cache.prefetch()  # logged, not raised
    with pytest.raises(IdentityError):
        await cache.key("a")
    await cache.aclose()
