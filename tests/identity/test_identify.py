"""The identity methods in order: which one identifies a request, and what is refused how."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers

from gatekeeper.contract import Subject
from gatekeeper.errors import AuthenticationError, ConfigurationError, IdentityError
from gatekeeper.identity import (
    CachedSubjectStore,
    FileSubjectStore,
    Identifier,
    RedisSubjectStore,
    SubjectCache,
    SubjectRecord,
    hash_api_key,
)
from gatekeeper.settings import IdentitySettings
from tests.jwks import AUDIENCE, ISSUER, IdentityProvider

DEMO_SUBJECTS = Path(__file__).resolve().parents[2] / "examples" / "demo" / "subjects.toml"


def bearer(credential: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {credential}".encode())]


class Hook:
    """A resolver hook over a dict of team tokens, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.teams: dict[str, dict[str, Any]] = {"team-a": {"id": "team-a", "tier": "pro"}}

    async def __call__(
        self, headers: Headers, client: tuple[str, int] | None
    ) -> Mapping[str, Any] | None:
        self.calls += 1
        token = headers.get("authorization", "").removeprefix("Bearer ")
        return self.teams.get(token)


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.new_key("k1")
    with provider.serve():
        yield provider


def identifier(idp: IdentityProvider, methods: list[str], hook: Any = None) -> Identifier:
    settings = IdentitySettings(
        methods=methods,
        subjects_file=DEMO_SUBJECTS,
        jwt={"jwks_url": idp.url, "issuer": ISSUER, "audience": [AUDIENCE]},
    )
    return Identifier.from_settings(settings, resolver=hook)


@pytest.mark.parametrize(
    ("credential", "method", "subject_id"),
    [
        ("jwt", "jwt", "user-1"),
        ("gk-demo-pro", "api_key", "demo-pro"),
        ("team-a", "resolver", "team-a"),
    ],
    ids=["jwt", "api-key", "resolver"],
)
async def test_the_first_method_that_knows_the_credential_names_itself(
    idp: IdentityProvider, credential: str, method: str, subject_id: str
) -> None:
    ident = identifier(idp, ["jwt", "api_key", "resolver"], Hook())
    if credential == "jwt":
        credential = idp.token("k1", sub="user-1", tier="pro")
    subject = await ident.identify(bearer(credential), ("127.0.0.1", 1))
    assert (subject.id, subject.auth_method) == (subject_id, method)
    await ident.aclose()


async def test_a_failing_jwt_is_not_retried_as_an_api_key(idp: IdentityProvider) -> None:
    hook = Hook()
    ident = identifier(idp, ["jwt", "api_key", "resolver"], hook)
    with pytest.raises(AuthenticationError) as refused:
        await ident.identify(bearer(idp.token("k1", sub="u", expires_in=-300)), None)
    assert refused.value.code == "token_expired"
    assert hook.calls == 0
    await ident.aclose()


@pytest.mark.parametrize(
    ("methods", "credential", "code"),
    [
        (["api_key"], None, "missing_api_key"),
        (["api_key"], "nope", "invalid_api_key"),
        (["jwt", "api_key"], "nope", "invalid_api_key"),
        (["jwt"], None, "missing_token"),
        (["jwt"], "gk-demo-pro", "invalid_token"),
        (["resolver"], "nope", "invalid_credentials"),
        (["resolver"], None, "missing_credentials"),
    ],
    ids=[
        "key-missing",
        "key-unknown",
        "jwt-then-key",
        "jwt-missing",
        "jwt-only",
        "hook",
        "hook-none",
    ],
)
async def test_unidentified_requests_get_401_saying_why(
    idp: IdentityProvider, methods: list[str], credential: str | None, code: str
) -> None:
    ident = identifier(idp, methods, Hook() if "resolver" in methods else None)
    with pytest.raises(AuthenticationError) as refused:
        await ident.identify(bearer(credential) if credential else [], None)
    assert (refused.value.status, refused.value.code) == (401, code)
    await ident.aclose()


async def test_resolver_answers_are_cached_and_revocation_takes_the_ttl(
    idp: IdentityProvider,
) -> None:
    hook = Hook()
    ident = identifier(idp, ["resolver"], hook)
    assert ident.resolver is not None
    for _ in range(3):
        assert (await ident.identify(bearer("team-a"), None)).tier == "pro"
    assert hook.calls == 1
    del hook.teams["team-a"]  # revoked in the app's database
    assert (await ident.identify(bearer("team-a"), None)).id == "team-a"  # cached, within TTL
    ident.resolver.cache.discard(hash_api_key("team-a"))  # as the TTL running out would
    with pytest.raises(AuthenticationError):
        await ident.identify(bearer("team-a"), None)
    await ident.aclose()


@pytest.mark.parametrize("failure", ["raises", "hangs", "wrong-type"])
async def test_a_failing_resolver_is_503_never_an_allow(
    idp: IdentityProvider, failure: str
) -> None:
    async def hook(headers: Headers, client: tuple[str, int] | None) -> Any:
        if failure == "raises":
            raise RuntimeError("database down")
        if failure == "hangs":
            await asyncio.sleep(5)
        return 42

    settings = IdentitySettings(methods=["resolver"], resolver_timeout=0.05)
    ident = Identifier.from_settings(settings, resolver=hook)
    with pytest.raises(IdentityError) as refused:
        await ident.identify(bearer("x"), None)
    assert (refused.value.status, refused.value.code) == (503, "identity_unavailable")


def test_resolver_by_import_path_and_its_errors() -> None:
    settings = IdentitySettings(methods=["resolver"], resolver="tests.identity.hooks:resolve")
    assert Identifier.from_settings(settings).resolver is not None
    for path in (
        "tests.identity.hooks",
        "tests.identity.hooks:nothing",
        "tests.identity.hooks:sync",
    ):
        with pytest.raises(ConfigurationError):
            Identifier.from_settings(IdentitySettings(methods=["resolver"], resolver=path))
    with pytest.raises(ConfigurationError, match="resolver"):
        Identifier.from_settings(IdentitySettings(methods=["resolver"]))


def test_subject_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache = SubjectCache(10, 2, clock=lambda: now[0])
    for name in ("a", "b", "c"):
        cache.put(name, Subject(id=name))
    assert len(cache) == 2 and cache.get("a") == (False, None)
    hit, subject = cache.get("c")
    assert hit and subject is not None and subject.id == "c"
    now[0] = 11
    assert cache.get("c") == (False, None)


async def test_redis_revocation_takes_effect_within_the_cache_ttl(redis_url: str) -> None:
    redis = RedisSubjectStore(redis_url, prefix="gk:test-cache:", cache_seconds=0)
    store = CachedSubjectStore(redis, ttl=0.2, size=100)
    record = SubjectRecord(key="k-revoke", id="r1")
    await redis.put(record)
    assert (await store.lookup("k-revoke")) is not None
    assert record.key_sha256 is not None
    await redis.delete(record.key_sha256)
    assert (await store.lookup("k-revoke")) is not None  # still cached
    await asyncio.sleep(0.25)
    assert (await store.lookup("k-revoke")) is None
    await store.aclose()


async def test_file_store_rereads_a_changed_file_and_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "subjects.toml"
    path.write_text('[[subjects]]\nkey = "k1"\nid = "one"\n')
    store = FileSubjectStore(path, reload_seconds=0.01)
    assert await store.lookup("k1") is not None
    path.write_text('[[subjects]]\nkey = "k2"\nid = "two"\n')
    await asyncio.sleep(0.02)
    await store.lookup("k1")  # starts the re-read
    await store.aclose()  # waits for it
    assert await store.lookup("k1") is None and await store.lookup("k2") is not None
    path.write_text("not toml [")
    await asyncio.sleep(0.02)
    await store.lookup("k2")
    await store.aclose()
    assert await store.lookup("k2") is not None
    health = await store.health()
    assert health.ok and health.degraded and health.detail["status"] == "degraded"
