"""Fixtures for the demo-reasoner tests: one real uvicorn server on a free loopback port, and the
official SDK clients pointed at it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
import uvicorn

from gatekeeper.offline.demo.model_server import create_model_app


def free_socket() -> socket.socket:
    """A loopback socket bound to a port the kernel chose, ready to hand to a server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="session")
def model_url() -> Iterator[str]:
    """Base URL of demo-reasoner served by uvicorn in a background thread."""
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_model_app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("demo-reasoner did not start")
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def openai_client(model_url: str) -> Iterator[openai.OpenAI]:
    """The official OpenAI client; retries off so an error surfaces on the first response."""
    with openai.OpenAI(base_url=f"{model_url}/v1", api_key="sk-demo", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(model_url: str) -> Iterator[anthropic.Anthropic]:
    """The official Anthropic client; retries off so an error surfaces on the first response."""
    with anthropic.Anthropic(base_url=model_url, api_key="sk-ant-demo", max_retries=0) as client:
        yield client


@pytest.fixture
def http(model_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client for what the SDKs hide: raw SSE bytes and malformed bodies."""
    with httpx.Client(base_url=model_url, timeout=10) as client:
        yield client
