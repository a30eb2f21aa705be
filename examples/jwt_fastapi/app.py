"""A FastAPI model API that takes bearer JWTs from an identity provider, through gatekeeper.

Run it from the repository root (``examples/jwt_fastapi/run.sh`` also starts a development
identity provider, ``dev_idp.py``):

    uvicorn examples.jwt_fastapi.app:app --port 8002 --no-proxy-headers

The handler knows nothing about tokens: ``GatekeeperMiddleware`` verifies them (signature by the
provider's JWKS, issuer, audience, expiry), maps their claims to a subject (tier and KYC level
from the namespaced claims in ``gatekeeper.toml``), and the policy decides how much reasoning
that subject sees. The demo's API keys still work, after JWTs (``identity.methods``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from gatekeeper import GatekeeperMiddleware, Settings

HERE = Path(__file__).resolve().parent

app = FastAPI(title="my-model-api")
app.add_middleware(GatekeeperMiddleware, settings=Settings.load(HERE / "gatekeeper.toml"))


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> dict[str, Any]:
    body: dict[str, Any] = await request.json()
    question = str(body["messages"][-1]["content"])
    reasoning = f"The user asks {question!r}. Compare the numbers digit by digit, then answer."
    answer = "9.8 is larger than 9.11."
    message = {"role": "assistant", "content": answer, "reasoning_content": reasoning}
    return {
        "id": "chatcmpl-jwt-example",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "my-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": len(question.split()),
            "completion_tokens": len((reasoning + " " + answer).split()),
            "total_tokens": len((question + " " + reasoning + " " + answer).split()),
            "completion_tokens_details": {"reasoning_tokens": len(reasoning.split())},
        },
    }
