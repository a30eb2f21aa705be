"""A small model server behind ``GatekeeperMiddleware``, served by uvicorn over real HTTP.

The model answers OpenAI chat completions (JSON or SSE) with exactly the usage a test asks for
in request headers, so a test knows what gatekeeper must settle each token quota to. The
policy is written per test: every quota it lists costs 1 (``requests``) or the request's
estimated tokens (``tokens``, ``reasoning_tokens``), like the default pack.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gatekeeper import Gatekeeper, GatekeeperMiddleware, Settings
from tests.servers import free_port

API_KEY = "gk-test-key"

POLICY = """package gatekeeper

priced(q) := object.union(q, {"cost": 1}) if q.unit == "requests"

priced(q) := object.union(q, {"cost": input.request.estimated_tokens}) if q.unit != "requests"

decision := {
	"allow": true,
	"status": 200,
	"reasons": [],
	"quotas": [priced(q) | some q in data.testing.quotas],
	"reasoning": {"mode": data.testing.mode},
	"obligations": {},
	"headers": {},
	"shadow": false,
}
"""

SUBJECTS = f"""[[subjects]]
key = "{API_KEY}"
id = "s1"
org = "o1"
tier = "free"
kyc_level = "email"
"""


def _int(request: Request, name: str, default: int) -> int:
    return int(request.headers.get(f"x-test-{name}", default))


async def chat(request: Request) -> Response:
    body = await request.json()
    prompt, completion = _int(request, "prompt-tokens", 10), _int(request, "completion-tokens", 20)
    reasoning = _int(request, "reasoning-tokens", 0)
    status = _int(request, "status", 200)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if status >= 400:
        return JSONResponse(
            {"error": {"message": "upstream failed", "type": "server_error"}}, status_code=status
        )
    if not body.get("stream"):
        message = {"role": "assistant", "content": "ok " * 5}
        if reasoning:
            message["reasoning_content"] = "hmm " * reasoning
        return JSONResponse(
            {
                "id": "c1",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            }
        )
    chunks, delay = _int(request, "chunks", 5), _int(request, "delay-ms", 0) / 1000
    with_usage = (body.get("stream_options") or {}).get("include_usage") is True

    async def events() -> AsyncIterator[bytes]:
        for i in range(chunks):
            delta = {"content": f"word{i} "}
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            if delay:
                await asyncio.sleep(delay)
        if with_usage:
            last = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
            yield b"data: " + json.dumps(last).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def protected_app(
    tmp: Path, storage: str, quotas: list[dict[str, Any]], *, mode: str = "full", **quota: Any
) -> tuple[Starlette, Gatekeeper]:
    """The model behind gatekeeper, with a policy that applies ``quotas``."""
    policy = tmp / "policy"
    (policy / "testing").mkdir(parents=True, exist_ok=True)
    (policy / "decision.rego").write_text(POLICY)
    (policy / "testing" / "data.json").write_text(json.dumps({"quotas": quotas, "mode": mode}))
    subjects = tmp / "subjects.toml"
    subjects.write_text(SUBJECTS)
    settings = Settings.load(
        None,
        identity={"store": "file", "subjects_file": subjects},
        policy={"path": policy},
        # A generous store timeout: these tests are about enforcement, and CI machines are busy.
        quota={"storage": storage, "timeout": 2.0, **quota},
        audit={"path": tmp / "decisions.jsonl"},
    )
    gatekeeper = Gatekeeper.from_settings(settings)
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    app.add_middleware(GatekeeperMiddleware, gatekeeper=gatekeeper)
    return app, gatekeeper


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """``app`` on a free loopback port, in this event loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def chat_body(*, stream: bool = False, usage: bool = True, max_tokens: int = 1000) -> dict:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello"}],
    }
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    return body


HEADERS = {"authorization": f"Bearer {API_KEY}"}
