"""JWT, API-key and resolver identity end to end: the demo over HTTP with
identity.methods = ["jwt", "api_key", "resolver"], a local JWKS server, the official SDKs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import anthropic_client, openai_client
from tests.jwks import AUDIENCE, ISSUER, IdentityProvider, unsigned_token
from tests.servers import DemoServer, demo_server

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "Is 9.11 larger than 9.8?"}]


def jwt_env(jwks_url: str) -> dict[str, str]:
    return {
        "GATEKEEPER_IDENTITY__METHODS": '["jwt", "api_key", "resolver"]',
        "GATEKEEPER_IDENTITY__RESOLVER": "tests.identity.hooks:resolve",
        "GATEKEEPER_IDENTITY__JWT__JWKS_URL": jwks_url,
        "GATEKEEPER_IDENTITY__JWT__ISSUER": ISSUER,
        "GATEKEEPER_IDENTITY__JWT__AUDIENCE": f'["{AUDIENCE}"]',
        "GATEKEEPER_IDENTITY__JWT__JWKS_MIN_FETCH_INTERVAL": "0",
    }


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.new_key("k1")
    provider.new_key("k-later", publish=False)
    with provider.serve():
        yield provider


@pytest.fixture(scope="module")
def server(idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("identity"), **jwt_env(idp.url)) as running:
        yield running


def chat(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(model="demo-reasoner", messages=QUESTION)  # type: ignore[arg-type]


def event_of(server: DemoServer, decision_id: str) -> dict[str, Any]:
    for _ in range(100):
        for event in server.events():
            if event.get("decision_id") == decision_id:
                return event
        time.sleep(0.05)
    raise AssertionError(f"no event {decision_id}")


# --- valid tokens: the claims give tier and KYC, the tier gives the reasoning -----------------


@pytest.mark.parametrize(
    ("tier", "kyc", "mode"),
    [
        ("enterprise", "business", "full"),
        ("pro", "government_id", "summary"),
        ("free", "email", "drop"),
    ],
)
def test_a_valid_jwt_gets_its_tiers_reasoning(
    server: DemoServer, idp: IdentityProvider, tier: str, kyc: str, mode: str
) -> None:
    token = idp.token("k1", sub=f"jwt-{tier}", tier=tier, kyc_level=kyc, org="idp-org")
    raw = openai_client(server, token).chat.completions.with_raw_response.create(
        model="demo-reasoner",
        messages=QUESTION,  # type: ignore[arg-type]
    )
    message = raw.parse().choices[0].message
    assert message.content
    assert bool(getattr(message, "reasoning_content", None)) == (mode != "drop")
    event = event_of(server, raw.headers["x-gatekeeper-decision-id"])
    subject = event["input"]["subject"]
    assert (subject["id"], subject["tier"], subject["kyc_level"]) == (f"jwt-{tier}", tier, kyc)
    assert subject["auth_method"] == "jwt"
    assert event["result"]["reasoning"]["mode"] == mode
    assert token.encode() not in server.log_path.read_bytes()


def test_a_valid_jwt_through_the_anthropic_sdk(server: DemoServer, idp: IdentityProvider) -> None:
    token = idp.token("k1", sub="jwt-anthropic", tier="enterprise", kyc_level="business")
    client = anthropic.Anthropic(base_url=server.url, auth_token=token, max_retries=0)
    reply = client.messages.create(model="demo-reasoner", max_tokens=256, messages=QUESTION)  # type: ignore[arg-type]
    assert [block.type for block in reply.content] == ["thinking", "text"]


# --- refused tokens: 401 in the API's format, the code says which ----------------------------


REFUSED = [
    ("expired", lambda p: p.token("k1", sub="u", expires_in=-300), "token_expired"),
    (
        "wrong-audience",
        lambda p: p.token("k1", sub="u", audience="https://other/"),
        "invalid_token",
    ),
    ("wrong-issuer", lambda p: p.token("k1", sub="u", issuer="https://evil/"), "invalid_token"),
    ("bad-signature", lambda p: p.token("k1", sub="u")[:-12] + "AAAAAAAAAAAA", "invalid_token"),
    ("alg-none", lambda p: unsigned_token(sub="u", tier="enterprise"), "invalid_token"),
]


@pytest.mark.parametrize(("make", "code"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_tokens_with_the_openai_sdk(
    server: DemoServer, idp: IdentityProvider, make: Any, code: str
) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(openai_client(server, make(idp)))
    assert caught.value.status_code == 401
    assert caught.value.code == code


@pytest.mark.parametrize(("make", "code"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_tokens_with_the_anthropic_sdk(
    server: DemoServer, idp: IdentityProvider, make: Any, code: str
) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic_client(server, make(idp)).messages.create(
            model="demo-reasoner",
            max_tokens=64,
            messages=QUESTION,  # type: ignore[arg-type]
        )
    assert caught.value.status_code == 401
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "authentication_error"
    assert code in caught.value.message or code in str(body)


# --- the other methods, in the same server ---------------------------------------------------


def test_api_keys_still_work_and_say_so(server: DemoServer) -> None:
    raw = openai_client(server, "gk-demo-free").chat.completions.with_raw_response.create(
        model="demo-reasoner",
        messages=QUESTION,  # type: ignore[arg-type]
    )
    event = event_of(server, raw.headers["x-gatekeeper-decision-id"])
    assert event["input"]["subject"]["auth_method"] == "api_key"


def test_the_resolver_hook_identifies_its_own_subjects(server: DemoServer) -> None:
    raw = openai_client(server, "team-enterprise").chat.completions.with_raw_response.create(
        model="demo-reasoner",
        messages=QUESTION,  # type: ignore[arg-type]
    )
    assert getattr(raw.parse().choices[0].message, "reasoning_content", None)
    event = event_of(server, raw.headers["x-gatekeeper-decision-id"])
    assert event["input"]["subject"]["auth_method"] == "resolver"
    assert event["input"]["subject"]["id"] == "team-enterprise"
    reply = anthropic_client(server, "team-free").messages.create(
        model="demo-reasoner",
        max_tokens=64,
        messages=QUESTION,  # type: ignore[arg-type]
    )
    assert [block.type for block in reply.content] == ["text"]
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(openai_client(server, "nobody-knows-me"))
    assert caught.value.code == "invalid_api_key"


# --- key rotation and the JWKS endpoint down ------------------------------------------------


def test_an_unknown_kid_is_401_until_the_provider_rotates_to_it(
    server: DemoServer, idp: IdentityProvider
) -> None:
    token = idp.token("k-later", sub="rotated", tier="pro", kyc_level="government_id")
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(openai_client(server, token))
    assert caught.value.code == "invalid_token"
    idp.published.append("k-later")  # the provider rotates: the new key is in its JWKS
    assert chat(openai_client(server, token)).choices[0].message.content


def test_jwks_down_cached_keys_work_and_uncached_ones_are_503(tmp_path: Path) -> None:
    provider = IdentityProvider()
    provider.new_key("cached")
    provider.new_key("uncached", publish=False)
    with provider.serve() as url, demo_server(tmp_path, **jwt_env(url)) as server:
        cached = provider.token("cached", sub="c", tier="free", kyc_level="email")
        assert chat(openai_client(server, cached)).choices[0].message.content
        provider.stop()  # the identity provider's JWKS endpoint goes away
        assert chat(openai_client(server, cached)).choices[0].message.content
        with pytest.raises(openai.InternalServerError) as caught:
            chat(openai_client(server, provider.token("uncached", sub="u")))
        assert (caught.value.status_code, caught.value.code) == (503, "identity_unavailable")
        ready = httpx.get(f"{server.url}/readyz", timeout=5).json()
        assert ready["checks"]["subjects"]["jwt"]["status"] == "degraded"
