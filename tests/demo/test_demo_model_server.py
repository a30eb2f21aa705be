"""The demo-reasoner app as a whole: health, models, unknown routes, determinism, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from gatekeeper.offline.demo.model_server import create_model_app

from .conftest import free_socket

REPO = Path(__file__).resolve().parents[2]
CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Why is ice slippery?"}]}


def test_healthz(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_openai_models_list(openai_client: openai.OpenAI) -> None:
    assert [m.id for m in openai_client.models.list()] == ["demo-reasoner"]
    assert openai_client.models.retrieve("demo-reasoner").object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.models.retrieve("gpt-unknown")
    assert caught.value.code == "model_not_found"


def test_anthropic_models_list(anthropic_client: anthropic.Anthropic) -> None:
    assert [m.id for m in anthropic_client.models.list()] == ["demo-reasoner"]


def test_unknown_routes_answer_in_the_dialect_format(http: httpx.Client) -> None:
    openai_style = http.post("/v1/embeddings", json={})
    assert openai_style.status_code == 404
    assert openai_style.json()["error"]["message"] == "Invalid URL (POST /v1/embeddings)"
    wrong_method = http.get("/v1/messages")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["type"] == "error"


async def test_identical_requests_get_identical_bytes_across_apps() -> None:
    replies = []
    for _ in range(2):
        transport = httpx.ASGITransport(app=create_model_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            for stream in (False, True):
                response = await client.post(
                    "/v1/chat/completions", json={**CHAT, "stream": stream}
                )
                replies.append(response.content)
    assert replies[:2] == replies[2:]


async def test_stream_delay_paces_events() -> None:
    transport = httpx.ASGITransport(app=create_model_app(stream_delay=0.01))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        started = time.monotonic()
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        elapsed = time.monotonic() - started
    frames = response.content.count(b"\n\n")
    assert elapsed >= 0.01 * (frames - 1) * 0.9


def test_cli_runs_the_server_alone(tmp_path: Path) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)])),
    }
    command = [
        sys.executable,
        "-m",
        "gatekeeper.offline.demo.model_server",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.stderr.read() if process.stderr else b"") from None
                time.sleep(0.05)
        assert response.json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=10)
