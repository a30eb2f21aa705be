from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.servers import DemoServer, demo_server


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """One demo server per test module (quota state is per server)."""
    with demo_server(tmp_path_factory.mktemp("demo")) as server:
        yield server


@pytest.fixture
def fresh_demo(tmp_path: Path) -> Iterator[DemoServer]:
    """A demo server of the test's own, for tests that spend a quota."""
    with demo_server(tmp_path) as server:
        yield server


def openai_client(server: DemoServer, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.url + "/v1", api_key=key, max_retries=0, default_headers=headers or None
    )


def anthropic_client(server: DemoServer, key: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.url, api_key=key, max_retries=0, default_headers=headers or None
    )
