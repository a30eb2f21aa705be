"""The reasoning vault (memory and a real Redis) and per-request continuity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gatekeeper.dialects import AnthropicMessages, OpenAIResponses
from gatekeeper.errors import ConfigurationError
from gatekeeper.reasoning.continuity import (
    Continuity,
    ContinuityVault,
    MemoryVault,
    ReasoningVault,
    RedisVault,
    open_vault,
)
from gatekeeper.redis_client import redis_client
from tests.dialects.streams import now, shaper
from tests.servers import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_vault_forgets_after_the_ttl() -> None:
    clock = Clock()
    vault = MemoryVault(clock=clock)
    await vault.put([("a", b"1"), ("b", b"2")], ttl=10)
    assert await vault.get(["a", "b", "c"]) == {"a": b"1", "b": b"2"}
    clock.now += 10
    assert await vault.get(["a", "b"]) == {}
    assert (await vault.health())["entries"] == 0


async def test_memory_vault_is_bounded_oldest_first() -> None:
    vault = MemoryVault(max_entries=2)
    await vault.put([("a", b"1")], ttl=60)
    await vault.put([("b", b"2"), ("c", b"3")], ttl=60)
    assert await vault.get(["a", "b", "c"]) == {"b": b"2", "c": b"3"}


@pytest.fixture
async def redis_vault(redis_url: str) -> AsyncIterator[RedisVault]:
    vault = RedisVault(redis_client(redis_url))
    yield vault
    await vault.aclose()


async def test_redis_vault_stores_with_a_ttl(redis_vault: RedisVault) -> None:
    await redis_vault.put([("gk:test:a", b"1"), ("gk:test:b", b"2")], ttl=0.2)
    assert await redis_vault.get(["gk:test:a", "gk:test:b", "gk:test:c"]) == {
        "gk:test:a": b"1",
        "gk:test:b": b"2",
    }
    assert 0 < await redis_vault.client.pttl("gk:test:a") <= 200
    await asyncio.sleep(0.3)
    assert await redis_vault.get(["gk:test:a"]) == {}
    assert (await redis_vault.health())["state"] == "up"


def test_open_vault_follows_the_quota_storage(redis_url: str) -> None:
    assert isinstance(open_vault("memory://"), MemoryVault)
    assert isinstance(open_vault(redis_url), RedisVault)
    with pytest.raises(ConfigurationError):
        open_vault("mongodb://x")


# -- a whole exchange: keep from a response, restore into the next request ----------------


RESPONSE = {
    "id": "msg_1",
    "content": [
        {"type": "thinking", "thinking": "Call the tool first.", "signature": "SIG"},
        {"type": "tool_use", "id": "toolu_9", "name": "w", "input": {}},
    ],
}


def follow_up(content: list[Any]) -> bytes:
    return orjson.dumps(
        {
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]},
            ]
        }
    )


async def keep(vault: ReasoningVault, subject: str) -> list[Any]:
    s = shaper(AnthropicMessages(), "drop", keep=True)
    shown = now(s.shape_json(RESPONSE))
    continuity = Continuity(ContinuityVault(vault), subject)
    await continuity.save(s.kept)
    assert continuity.kept == 1
    return list(shown["content"])


@pytest.fixture(params=["memory", "redis"])
def vault(request: pytest.FixtureRequest, redis_url: str) -> ReasoningVault:
    return MemoryVault() if request.param == "memory" else RedisVault(redis_client(redis_url))


async def test_the_same_subject_gets_its_reasoning_back(vault: ReasoningVault) -> None:
    shown = await keep(vault, "alice")
    continuity = Continuity(ContinuityVault(vault), "alice")
    body = await continuity.restore(AnthropicMessages(), follow_up(shown))
    assert orjson.loads(body)["messages"][1]["content"] == RESPONSE["content"]
    assert continuity.restored == 1


async def test_another_subject_replaying_the_ids_restores_nothing(vault: ReasoningVault) -> None:
    shown = await keep(vault, "alice")
    request = follow_up(shown)
    continuity = Continuity(ContinuityVault(vault), "mallory")
    assert await continuity.restore(AnthropicMessages(), request) is request
    assert continuity.restored == 0


async def test_a_body_without_markers_is_not_even_parsed() -> None:
    class Refusing(MemoryVault):
        async def get(self, keys: list[str]) -> dict[str, bytes]:
            raise AssertionError("no lookup expected")

    body = b'{"input": "just a question"}'
    continuity = Continuity(ContinuityVault(Refusing()), "s")
    assert await continuity.restore(OpenAIResponses(), body) is body


async def keeping_and_restoring_fail(vault: ReasoningVault) -> None:
    """A response's reasoning cannot be kept nor a follow-up restored: the follow-up goes on
    as the client sent it, and both failures are counted."""
    continuity = Continuity(ContinuityVault(vault, timeout=1.0), "alice")
    s = shaper(AnthropicMessages(), "drop", keep=True)
    shown = now(s.shape_json(RESPONSE))
    await continuity.save(s.kept)
    request = follow_up(shown["content"])
    assert await continuity.restore(AnthropicMessages(), request) is request
    assert (continuity.kept, continuity.restored, continuity.errors) == (0, 0, 2)


async def test_an_unreachable_vault_never_fails_the_request() -> None:
    vault = RedisVault(redis_client(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2))
    await keeping_and_restoring_fail(vault)
    assert (await vault.health())["state"] == "down"
    await vault.aclose()


async def test_a_vault_without_a_free_connection_degrades_continuity(redis_url: str) -> None:
    # quota.max_connections 1, its one connection busy longer than quota.pool_timeout.
    vault = open_vault(redis_url, max_connections=1, pool_timeout=0.05)
    assert isinstance(vault, RedisVault)
    held = asyncio.ensure_future(vault.client.blpop(["gk:test:none"], 0.5))
    await asyncio.sleep(0.05)
    await keeping_and_restoring_fail(vault)
    assert await held is None
    await keep(vault, "alice")  # the connection is back: continuity works again
    await vault.aclose()
