"""A FastAPI model API protected by gatekeeper.

Run it from the repository root:

    uvicorn examples.fastapi_app.app:app --port 8001

The route below is an ordinary FastAPI handler that speaks OpenAI's chat-completions format and
always returns its reasoning (``reasoning_content``). It knows nothing about API keys, tiers,
quotas or reasoning policy: ``GatekeeperMiddleware`` decides who may call it and how much of the
reasoning each caller sees, from the Rego policies named in ``gatekeeper.toml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gatekeeper import Gatekeeper, GatekeeperMiddleware, Settings

HERE = Path(__file__).resolve().parent

app = FastAPI(title="my-model-api")
# Built here, at import: a bad setting, policy, store URL or data file stops the server before
# it serves, under any --lifespan mode (FastAPI would build the middleware only on the first
# ASGI event, where uvicorn's --lifespan auto swallows the error).
gatekeeper = Gatekeeper.from_settings(Settings.load(HERE / "gatekeeper.toml"))
app.add_middleware(GatekeeperMiddleware, gatekeeper=gatekeeper)


def _answer(question: str) -> tuple[str, str]:
    reasoning = f"The user asks {question!r}. Compare the numbers digit by digit, then answer."
    return reasoning, "9.8 is larger than 9.11."


@app.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
    body: dict[str, Any] = await request.json()
    question = str(body["messages"][-1]["content"])
    reasoning, answer = _answer(question)
    model = body.get("model", "my-model")
    if body.get("stream"):
        return StreamingResponse(_stream(model, reasoning, answer), media_type="text/event-stream")
    message = {"role": "assistant", "content": answer, "reasoning_content": reasoning}
    return JSONResponse(
        {
            "id": "chatcmpl-example",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(question.split()),
                "completion_tokens": len((reasoning + " " + answer).split()),
                "total_tokens": len((question + " " + reasoning + " " + answer).split()),
                "completion_tokens_details": {"reasoning_tokens": len(reasoning.split())},
            },
        }
    )


def _stream(model: str, reasoning: str, answer: str) -> Iterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        document = {
            "id": "chatcmpl-example",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(document).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for word in reasoning.split(" "):
        yield chunk({"reasoning_content": word + " "})
    for word in answer.split(" "):
        yield chunk({"content": word + " "})
    yield chunk({}, finish="stop")
    yield b"data: [DONE]\n\n"


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": "my-model", "object": "model", "owned_by": "me"}]}
