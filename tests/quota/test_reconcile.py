"""Model tokens: the estimate is reserved before the app runs and settled from the real usage.

Driven over real HTTP through ``GatekeeperMiddleware`` (uvicorn, httpx), on memory and Redis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper import Gatekeeper
from gatekeeper.contract import QuotaSpec
from gatekeeper.quota.reservation import usage_total_tokens
from tests.quota._app import HEADERS, chat_body, protected_app, serve
from tests.quota.conftest import eventually, unique_prefix

CAP = 100_000
TOKENS = {
    "name": "tokens",
    "key": "subject:s1:tokens",
    "unit": "tokens",
    "capacity": CAP,
    "rate": 1,
    "period": 86_400,
}
MONTH = {
    "name": "tokens_month",
    "key": "org:o1:tokens_month",
    "unit": "tokens",
    "kind": "window",
    "window": "month",
    "capacity": CAP,
}
REASONING = {
    "name": "reasoning",
    "key": "subject:s1:reasoning",
    "unit": "reasoning_tokens",
    "capacity": CAP,
    "rate": 1,
    "period": 86_400,
}


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


async def left(gk: Gatekeeper, quota: dict[str, Any]) -> float:
    spec = QuotaSpec.model_validate({**quota, "cost": 0})
    return (await gk.quotas.acquire([spec])).states[0].remaining


async def settled_to(gk: Gatekeeper, quota: dict[str, Any], expected: float) -> float:
    """Wait for the settlement after the response; return the level it reached."""

    async def reached() -> bool:
        return abs(await left(gk, quota) - expected) < 1

    await eventually(reached)
    return await left(gk, quota)


@pytest.mark.parametrize(
    ("body", "headers", "used"),
    [
        pytest.param(chat_body(), {"x-test-completion-tokens": "20"}, 30, id="json"),
        pytest.param(chat_body(stream=True), {"x-test-completion-tokens": "50"}, 60,
                     id="sse-final-usage-event"),
        pytest.param(chat_body(max_tokens=10), {"x-test-completion-tokens": "490"}, 500,
                     id="usage-above-the-reservation-is-charged"),
        pytest.param(chat_body(), {"x-test-status": "500"}, 0, id="upstream-error-refunded"),
    ],
)  # fmt: skip
async def test_tokens_are_settled_from_the_real_usage(
    tmp_path: Path, storage: str, body: dict, headers: dict, used: int
) -> None:
    app, gk = protected_app(tmp_path, storage, [TOKENS, MONTH], key_prefix=unique_prefix())
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/v1/chat/completions", json=body, headers={**HEADERS, **headers}
        )
        await response.aread()
        assert await settled_to(gk, TOKENS, CAP - used) == pytest.approx(CAP - used, abs=1)
        assert await left(gk, MONTH) == CAP - used


async def test_a_stream_without_usage_is_charged_for_what_was_sent(
    tmp_path: Path, storage: str
) -> None:
    app, gk = protected_app(tmp_path, storage, [TOKENS], key_prefix=unique_prefix())
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat_body(stream=True, usage=False, max_tokens=5000),
            headers={**HEADERS, "x-test-chunks": "8"},
        )
        sent = len(response.content)
        expected = CAP - (2 + (sent + 3) // 4)  # "hello" ≈ 2 tokens, then ~4 bytes a token
        assert await settled_to(gk, TOKENS, expected) == pytest.approx(expected, abs=1)


async def test_a_stream_cut_by_the_client_is_charged_for_what_was_sent(
    tmp_path: Path, storage: str
) -> None:
    app, gk = protected_app(tmp_path, storage, [TOKENS, MONTH], key_prefix=unique_prefix())
    reserved = 2 + 5000
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        request = client.build_request(
            "POST",
            "/v1/chat/completions",
            json=chat_body(stream=True, max_tokens=5000),
            headers={**HEADERS, "x-test-chunks": "500", "x-test-delay-ms": "10"},
        )
        response = await client.send(request, stream=True)
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > 300:
                break
        await response.aclose()  # the client goes away mid-stream
        assert await left(gk, TOKENS) <= CAP - reserved + 1  # the estimate is held meanwhile

        async def settled() -> bool:
            return await left(gk, TOKENS) > CAP - reserved + 1

        assert await eventually(settled)
        level = await left(gk, TOKENS)
        # Refunded most of the reservation, but charged for the events that went out.
        assert CAP - reserved < level < CAP - (2 + received // 4) + 1
        assert await left(gk, MONTH) == pytest.approx(level, abs=1)


@pytest.mark.parametrize(
    ("mode", "exposed"), [pytest.param("full", 40, id="full"), pytest.param("drop", 0, id="drop")]
)
async def test_reasoning_tokens_are_settled_with_what_the_client_saw(
    tmp_path: Path, storage: str, mode: str, exposed: int
) -> None:
    app, gk = protected_app(tmp_path, storage, [REASONING], mode=mode, key_prefix=unique_prefix())
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat_body(),
            headers={**HEADERS, "x-test-reasoning-tokens": "40"},
        )
        assert response.status_code == 200
        assert ("reasoning_content" in response.json()["choices"][0]["message"]) == bool(exposed)
        assert await settled_to(gk, REASONING, CAP - exposed) == pytest.approx(CAP - exposed, abs=1)


async def test_a_refused_request_reserves_nothing(tmp_path: Path, storage: str) -> None:
    small = {**TOKENS, "capacity": 500}
    app, gk = protected_app(tmp_path, storage, [small, MONTH], key_prefix=unique_prefix())
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=1000), headers=HEADERS
        )
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "quota_exceeded"
        assert int(response.headers["retry-after"]) >= 1
        assert await left(gk, MONTH) == CAP


@pytest.mark.parametrize(
    ("usage", "total"),
    [
        pytest.param({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, 7,
                     id="chat"),
        pytest.param({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7,
                      "output_tokens_details": {"reasoning_tokens": 2}}, 7, id="responses"),
        pytest.param({"input_tokens": 3, "cache_read_input_tokens": 10,
                      "cache_creation_input_tokens": 5, "output_tokens": 4}, 22,
                     id="anthropic-with-cache"),
        pytest.param({"output_tokens": 4}, 4, id="anthropic-delta-only"),
        pytest.param({"something": 1}, None, id="unknown"),
    ],
)  # fmt: skip
def test_usage_totals_per_dialect(usage: dict, total: int | None) -> None:
    assert usage_total_tokens(usage) == total
