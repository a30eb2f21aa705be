"""A model API that fails on request, behind gatekeeper and the demo configuration, for the fault
tests: ``uvicorn --factory tests.faults.apps:create_app`` (settings from the environment,
``GATEKEEPER_CONFIG`` and the rest).

``model: "explode"`` raises before answering; ``"explode-midstream"`` streams one SSE event, then
raises; anything else gets a short chat completion.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gatekeeper import GatekeeperMiddleware


class AppFailure(RuntimeError):
    """What the app raises: its message must never reach a client."""


SECRET = "db password hunter2 at 10.1.2.3"  # in the app's exception, never in a response


async def chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    model = body.get("model")
    if model == "explode":
        raise AppFailure(SECRET)
    if model == "explode-midstream":

        async def events() -> AsyncIterator[bytes]:
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
            }
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            raise AppFailure(SECRET)

        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "9.8 is larger."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        }
    )


def create_app() -> Starlette:
    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"])],
        middleware=[Middleware(GatekeeperMiddleware)],
    )
