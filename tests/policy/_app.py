"""An app behind ``GatekeeperMiddleware`` for policy tests, driven in-process over ASGI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gatekeeper import Gatekeeper, GatekeeperMiddleware, Settings
from tests.servers import ROOT

SUBJECTS = ROOT / "examples" / "demo" / "subjects.toml"
GEO_SOURCE = ROOT / "examples" / "demo" / "geo" / "demo-geo.yaml"
CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "hi"}]}


async def _chat(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "demo-reasoner",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


def protected_app(tmp: Path, **policy: Any) -> tuple[GatekeeperMiddleware, Gatekeeper]:
    """A chat-completions app behind gatekeeper, with ``policy`` settings (engine, path, opa…)."""
    settings = Settings.load(
        identity={"store": "file", "subjects_file": SUBJECTS},
        # 127.0.0.1 (the ASGI client) is US in the demo database; X-Forwarded-For may move it.
        network={
            "trusted_proxies": ["127.0.0.1"],
            "geoip_source": GEO_SOURCE,
            "geoip_database": tmp / "geo.mmdb",
        },
        audit={"path": tmp / "decisions.jsonl"},
        policy=policy,
    )
    gk = Gatekeeper.from_settings(settings)
    app = Starlette(routes=[Route("/v1/chat/completions", _chat, methods=["POST"])])
    return GatekeeperMiddleware(app, gatekeeper=gk), gk


@asynccontextmanager
async def serving(tmp: Path, **policy: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Gatekeeper]]:
    """An HTTP client for ``protected_app(tmp, **policy)``; gatekeeper is closed afterwards
    (which flushes the decision log)."""
    app, gk = protected_app(tmp, **policy)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, gk
    finally:
        await gk.aclose()


async def chat(
    http: httpx.AsyncClient, key: str = "gk-demo-free", **headers: str
) -> httpx.Response:
    """One chat completion; the demo's trusted proxy lets X-Forwarded-For set the client."""
    return await http.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}", **headers},
    )


def decision_events(log: Path) -> list[dict[str, Any]]:
    """The decision events of a decision log (not its checkpoints)."""
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("gatekeeper", {}).get("kind", "decision") == "decision"]
