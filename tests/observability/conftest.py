"""In-process fixtures: demo-reasoner behind ``GatekeeperMiddleware``, driven over httpx's ASGI
transport, with its ``Gatekeeper`` at hand to read metrics and attach a tracer provider."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper.middleware import GatekeeperMiddleware
from gatekeeper.offline.demo.model_server import create_model_app
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings
from tests.servers import DEMO_CONFIG

CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Protected:
    """A client of the protected demo app, and the app's ``Gatekeeper``."""

    client: httpx.AsyncClient
    gk: Gatekeeper

    def sample(self, name: str, **labels: str) -> float:
        value = self.gk.observability.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    async def chat(self, key: str | None, **extra: Any) -> httpx.Response:
        headers = bearer(key) if key else {}
        return await self.client.post(
            "/v1/chat/completions", json={**CHAT, **extra}, headers=headers
        )


Factory = Callable[..., Any]


async def release_on_this_thread() -> None:
    """Let worker threads drop what they hold before the test drops its ``Gatekeeper``.

    A regorus engine may only be freed on the thread that made it (see DESIGN.md). The decision
    log's ``asyncio.to_thread`` work items can hold the last reference to the runtime (and so to
    the engine) for a moment after their result is in; joining the executor while this thread
    still holds the runtime, then collecting here, frees everything on this thread.
    """
    await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture
def protected(tmp_path: Path) -> Factory:
    """``async with protected(**settings_overrides) as p``: a fresh protected demo app."""

    @asynccontextmanager
    async def open_app(
        app: Any = None, peer: str = "127.0.0.1", **overrides: Any
    ) -> AsyncIterator[Protected]:
        overrides.setdefault("audit", {"path": str(tmp_path / "decisions.jsonl")})
        # The pack's own Rego tests run in tests/policy; skipping them here saves ~0.5 s a build.
        overrides.setdefault("policy", {"check": False})
        # The readiness detail and the metrics on the app's port (see tests/servers.py).
        overrides["observability"] = {"public_detail": True, **overrides.get("observability", {})}
        settings = Settings.load(DEMO_CONFIG, **overrides)
        gk = Gatekeeper.from_settings(settings)
        wrapped = GatekeeperMiddleware(app or create_model_app(), gatekeeper=gk)
        transport = httpx.ASGITransport(app=wrapped, client=(peer, 40000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
                yield Protected(c, gk)
        finally:
            await gk.aclose()
            await release_on_this_thread()
            del wrapped, transport, gk
            gc.collect()

    return open_app
