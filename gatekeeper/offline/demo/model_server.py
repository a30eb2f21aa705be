"""demo-reasoner: a built-in, deterministic model server that speaks three API dialects.

It stands in for a real reasoning model behind gatekeeper in demos and end-to-end tests. It never
touches the network, and the same request body always yields the same response bytes (ids are
derived from the request, timestamps are fixed). Endpoints:

- ``POST /v1/chat/completions``: OpenAI chat completions. Reasoning in ``reasoning_content`` on
  the message and on stream deltas (reasoning deltas first); usage with
  ``completion_tokens_details.reasoning_tokens``; streamed usage only with
  ``stream_options.include_usage``. With ``tools`` the first turn returns ``tool_calls``; a turn
  with tool calls must come back with its ``reasoning_content`` (DeepSeek's rule).
- ``POST /v1/responses``: OpenAI responses. A ``reasoning`` item (summary parts and
  ``encrypted_content``) then a ``message`` item, or a ``function_call`` item when tools are
  offered; the stream has the full event sequence. Earlier output sent back as ``input`` must
  keep each reasoning item before the item it led to, with its ``encrypted_content`` when
  ``store`` is false, or the request fails with 400 like the real API.
- ``POST /v1/messages``: Anthropic messages. A signed ``thinking`` block then ``text``; with
  ``tools``, ``thinking`` then ``tool_use``. A ``tool_result`` turn must replay the signed thinking
  of the turn that called the tool, or the request fails with 400 like the real API.
- ``GET /v1/models`` (OpenAI list shape; Anthropic's when an ``anthropic-version`` header is
  sent), ``GET /v1/models/{model}`` and ``GET /healthz``.

demo-reasoner always reasons unless the request turns reasoning off: chat
``reasoning_effort: "none"`` (or DeepSeek's ``thinking: {"type": "disabled"}``), responses
``reasoning: {"effort": "none"}``, Anthropic ``thinking: {"type": "disabled"}``. It answers under
whatever ``model`` name the request uses. Tokens are whitespace-separated words; a small output
limit (``max_tokens``, ``max_completion_tokens``, ``max_output_tokens``) cuts the output and
reports ``length`` / ``max_tokens`` / ``incomplete``. Authentication headers are ignored.

Run it alone with ``python -m gatekeeper.offline.demo.model_server --host 127.0.0.1 --port 9000``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatekeeper.offline.demo._chat import chat_completions, openai_error
from gatekeeper.offline.demo._messages import anthropic_error, messages
from gatekeeper.offline.demo._responses import responses
from gatekeeper.offline.demo._wire import DEMO_CREATED, MODEL_ID, InvalidRequest, json_response

__all__ = ["MODEL_ID", "create_model_app", "main"]


def create_model_app(*, stream_delay: float = 0.0) -> Starlette:
    """Build the demo-reasoner ASGI app.

    ``stream_delay`` is the pause in seconds between streamed events; the default sends them
    back to back, a small value makes streaming visible in a demo.
    """
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
    ]
    handlers = {404: _http_error, 405: _http_error}
    app = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.stream_delay = stream_delay
    return app


async def healthz(request: Request) -> Response:
    """Liveness: ``{"status": "ok"}``."""
    return json_response({"status": "ok"}, headers={})


async def list_models(request: Request) -> Response:
    """The one model, in OpenAI's list shape, or Anthropic's for Anthropic clients."""
    if "anthropic-version" in request.headers:
        data = [_anthropic_model(MODEL_ID)]
        page = {"data": data, "has_more": False, "first_id": MODEL_ID, "last_id": MODEL_ID}
        return json_response(page, headers={})
    return json_response({"object": "list", "data": [_openai_model(MODEL_ID)]}, headers={})


async def get_model(request: Request) -> Response:
    """One model by id; only demo-reasoner exists."""
    model = request.path_params["model"]
    anthropic = "anthropic-version" in request.headers
    if model != MODEL_ID:
        message = f"The model `{model}` does not exist or you do not have access to it."
        if anthropic:
            return anthropic_error(404, "not_found_error", f"model: {model}", "req_demo")
        return openai_error(InvalidRequest(message, code="model_not_found"), "req_demo", 404)
    shape = _anthropic_model(model) if anthropic else _openai_model(model)
    return json_response(shape, headers={})


def _openai_model(model: str) -> dict[str, object]:
    return {"id": model, "object": "model", "created": DEMO_CREATED, "owned_by": "gatekeeper"}


def _anthropic_model(model: str) -> dict[str, object]:
    created = "2026-01-01T00:00:00Z"
    return {"type": "model", "id": model, "display_name": "Demo Reasoner", "created_at": created}


async def _http_error(request: Request, exc: HTTPException) -> Response:
    # Unknown routes answer in the dialect's error format so SDK clients raise NotFoundError.
    if request.url.path.startswith("/v1/messages"):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return anthropic_error(exc.status_code, kind, exc.detail, "req_demo")
    message = f"Invalid URL ({request.method} {request.url.path})"
    return openai_error(InvalidRequest(message), "req_demo", exc.status_code)


def main(argv: Sequence[str] | None = None) -> None:
    """Run demo-reasoner alone under uvicorn."""
    parser = argparse.ArgumentParser(prog="python -m gatekeeper.offline.demo.model_server")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=9000, help="TCP port (default: 9000)")
    parser.add_argument(
        "--stream-delay", type=float, default=0.0, help="seconds between streamed events"
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    args = parser.parse_args(argv)
    app = create_model_app(stream_delay=args.stream_delay)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
