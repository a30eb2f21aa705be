"""``create_proxy_app`` in-process (httpx's ASGI transport as the client) in front of the real
echo upstream: the settings that change what is forwarded."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper.errors import ConfigurationError
from gatekeeper.proxy import ProxyApp, create_proxy_app
from gatekeeper.settings import Settings
from tests.observability.conftest import release_on_this_thread
from tests.servers import DEMO_CONFIG

PRO = {"Authorization": "Bearer gk-demo-pro"}

ProxyFactory = Callable[..., Any]


@pytest.fixture
def proxy(tmp_path: Path, echo_url: str) -> ProxyFactory:
    """``async with proxy(peer=..., **proxy_settings) as client``: a client of a fresh proxy."""

    @asynccontextmanager
    async def open_proxy(
        peer: str = "127.0.0.1", upstream: str | None = None, **proxy_settings: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings.load(
            DEMO_CONFIG,
            audit={"path": str(tmp_path / "decisions.jsonl")},
            policy={"check": False},  # the pack's Rego tests run in tests/policy
            proxy={"upstream": upstream or echo_url, **proxy_settings},
        )
        app = create_proxy_app(settings)
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway.test"
            ) as client:
                yield client
        finally:
            await app.app.aclose()  # type: ignore[attr-defined]
            await app.gk.aclose()  # type: ignore[attr-defined]
            await release_on_this_thread()
            del app, transport
            gc.collect()

    return open_proxy


def seen_headers(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {k: v for k, v in response.json()["headers"]}


async def test_rfc7239_forwarded_header(proxy: ProxyFactory) -> None:
    async with proxy(peer="192.0.2.44", forwarded_headers="forwarded") as client:
        sent = seen_headers(await client.get("/echo/x", headers=PRO))
    assert sent["forwarded"] == 'for=192.0.2.44;proto=http;host="gateway.test"'
    assert "x-forwarded-for" not in sent


async def test_untrusted_peer_cannot_set_the_forwarded_scheme(proxy: ProxyFactory) -> None:
    claims = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", **PRO}
    async with proxy(peer="192.0.2.44") as client:
        sent = seen_headers(await client.get("/echo/x", headers=claims))
    assert sent["x-forwarded-for"] == "6.6.6.6, 192.0.2.44"  # appended, for the upstream to judge
    assert sent["x-forwarded-proto"] == "http"  # what this hop saw, not the claim


async def test_preserve_host_sends_the_clients_host(proxy: ProxyFactory) -> None:
    async with proxy(preserve_host=True) as client:
        sent = seen_headers(await client.get("/echo/x", headers=PRO))
    assert sent["host"] == "gateway.test"


async def test_without_upstream_key_the_clients_credentials_pass_through(
    proxy: ProxyFactory,
) -> None:
    async with proxy() as client:
        sent = seen_headers(await client.get("/echo/x", headers=PRO))
    assert sent["authorization"] == "Bearer gk-demo-pro"


async def test_upstream_base_path_is_a_prefix(proxy: ProxyFactory, echo_url: str) -> None:
    async with proxy(upstream=echo_url + "/echo/base/") as client:
        response = await client.get("/v1/models?limit=2", headers=PRO)
    assert response.json()["raw_path"] == "/echo/base/v1/models"
    assert response.json()["query"] == "limit=2"


async def test_protected_like_any_app(proxy: ProxyFactory) -> None:
    async with proxy() as client:
        response = await client.get("/echo/x")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


async def test_response_carries_the_decision_id_and_via(proxy: ProxyFactory) -> None:
    async with proxy() as client:
        response = await client.get("/echo/x", headers=PRO)
    assert response.headers["x-gatekeeper-decision-id"]
    assert response.headers["via"] == "1.1 gatekeeper"


def test_proxy_needs_an_upstream(tmp_path: Path) -> None:
    settings = Settings.load(DEMO_CONFIG, audit={"path": str(tmp_path / "d.jsonl")})
    with pytest.raises(ConfigurationError, match="upstream"):
        ProxyApp(settings)


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:9000"], ids=["scheme", "no-scheme"])
def test_upstream_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="upstream must be an http"):
        Settings.load(DEMO_CONFIG, proxy={"upstream": url})


async def test_websockets_are_closed_not_forwarded(tmp_path: Path, echo_url: str) -> None:
    settings = Settings.load(DEMO_CONFIG, proxy={"upstream": echo_url})
    app = ProxyApp(settings)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "websocket", "path": "/v1/realtime", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
