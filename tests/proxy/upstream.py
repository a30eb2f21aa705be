"""A small upstream for the proxy tests, run as its own process.

``python -m tests.proxy.upstream --port P``. It shows the tests what the proxy sent and lets them
provoke what a real model server can do wrong:

- ``POST /v1/chat/completions``: an OpenAI chat completion whose content is the JSON of what
  arrived (headers, body size). ``model`` selects a behaviour: ``echo`` (default), ``stall``
  (never answers; notes when the proxy hangs up), ``stall-stream`` (one SSE chunk, then silence).
- ``POST /v1/messages``: only ``model: stall`` (never answers); anything else is a 404.
- ``ANY /echo/...``: the request as JSON, answered with hop-by-hop headers the proxy must drop.
- ``POST /upload``: reads the body as a stream; answers its size and SHA-256.
- ``GET /gated``: sends a first chunk, then waits for ``POST /release`` before the rest.
- ``GET /stall``: never answers; ``GET /events`` lists what the upstream noticed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

EVENTS: list[str] = []
RELEASE = asyncio.Event()


def _seen(request: Request, body: bytes) -> dict[str, object]:
    return {
        "method": request.method,
        "raw_path": request.scope["raw_path"].decode("latin-1"),
        "query": request.scope["query_string"].decode("latin-1"),
        "headers": [
            [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
        ],
        "body_bytes": len(body),
    }


async def _stall(request: Request, name: str) -> Response:
    # Starlette only offers a poll for "has the client gone?".
    while not await request.is_disconnected():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    EVENTS.append(f"{name}:disconnected")
    return Response(status_code=499)


def _completion(content: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "echo",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(content: str) -> bytes:
    chunk = {
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "echo",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def chat(request: Request) -> Response:
    body = await request.body()
    document = json.loads(body)
    model = document.get("model", "echo")
    if model == "stall":
        return await _stall(request, "chat")
    content = json.dumps(_seen(request, body))
    if model == "stall-stream":

        async def stalled() -> AsyncIterator[bytes]:
            yield _chunk("first")
            await asyncio.sleep(3600)

        return StreamingResponse(stalled(), media_type="text/event-stream")
    if document.get("stream"):

        async def events() -> AsyncIterator[bytes]:
            yield _chunk(content)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse(_completion(content))


async def messages(request: Request) -> Response:
    body = await request.body()
    if json.loads(body).get("model") == "stall":
        return await _stall(request, "messages")
    error = {"type": "not_found_error", "message": "only model=stall here"}
    return JSONResponse({"type": "error", "error": error}, status_code=404)


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        _seen(request, body),
        headers={
            "connection": "x-hop-secret",
            "x-hop-secret": "must-not-pass",
            "keep-alive": "timeout=5",
            "proxy-authenticate": 'Basic realm="upstream"',
            "x-end-to-end": "kept",
        },
    )


async def upload(request: Request) -> Response:
    digest = hashlib.sha256()
    size = 0
    chunks = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        chunks += bool(chunk)
    return JSONResponse({"bytes": size, "sha256": digest.hexdigest(), "chunks": chunks})


async def gated(request: Request) -> Response:
    RELEASE.clear()

    async def parts() -> AsyncIterator[bytes]:
        yield b"first\n"
        await RELEASE.wait()
        yield b"second\n"

    return StreamingResponse(parts(), media_type="text/plain")


async def release(request: Request) -> Response:
    RELEASE.set()
    return JSONResponse({"released": True})


async def stall(request: Request) -> Response:
    return await _stall(request, "stall")


async def events(request: Request) -> Response:
    return JSONResponse(EVENTS)


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/gated", gated, methods=["GET"]),
        Route("/release", release, methods=["POST"]),
        Route("/stall", stall, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
