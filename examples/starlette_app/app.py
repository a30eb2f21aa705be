"""A Starlette model API (Anthropic messages format) protected by gatekeeper.

Run it from the repository root:

    uvicorn examples.starlette_app.app:app --port 8002

The ``Gatekeeper`` (policy engine, quota store, decision log) is built once, explicitly, and
handed to the middleware: the way to share one instance between several apps in a process, or
to reach its parts (``gatekeeper.observability.metrics`` for instance) from your own code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gatekeeper import Gatekeeper, GatekeeperMiddleware, Settings

HERE = Path(__file__).resolve().parent

gatekeeper = Gatekeeper.from_settings(Settings.load(HERE / "gatekeeper.toml"))


async def messages(request: Request) -> JSONResponse:
    """Anthropic's messages API: a signed ``thinking`` block, then the answer."""
    body: dict[str, Any] = await request.json()
    question = str(body["messages"][-1]["content"])
    thinking = f"The user asks {question!r}. Compare digit by digit."
    answer = "9.8 is larger than 9.11."
    return JSONResponse(
        {
            "id": "msg_example",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "my-model"),
            "content": [
                {"type": "thinking", "thinking": thinking, "signature": "c2lnbmF0dXJl"},
                {"type": "text", "text": answer},
            ],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": len(question.split()), "output_tokens": 20},
        }
    )


app = Starlette(
    routes=[Route("/v1/messages", messages, methods=["POST"])],
    # The middleware closes the shared instance (flushing the decision log) at shutdown.
    middleware=[Middleware(GatekeeperMiddleware, gatekeeper=gatekeeper)],
)
