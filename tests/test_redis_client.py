"""The shared Redis client's bounded pool (quota.max_connections, quota.pool_timeout) on a real
redis-server: past the bound commands wait for a connection instead of failing, and a wait that
times out is a store failure each part handles as it documents (docs/operations.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gatekeeper import Settings
from gatekeeper.errors import QuotaStoreError
from gatekeeper.quota import FailoverQuotaStore, RedisQuotaStore, open_quota_store
from gatekeeper.reasoning.continuity import RedisVault
from gatekeeper.redis_client import PoolTimeout, WaitingConnectionPool, redis_client
from gatekeeper.runtime import _quota_store, _vault
from tests.quota.conftest import bucket, unique_prefix


def _pool(client: Redis) -> WaitingConnectionPool:
    pool = client.connection_pool
    assert isinstance(pool, WaitingConnectionPool)
    return pool


def _opened(pool: WaitingConnectionPool) -> int:
    return len(pool._available_connections) + len(pool._in_use_connections)


@pytest.fixture
async def small(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url, max_connections=2, pool_timeout=5.0)
    assert isinstance(client, Redis)
    yield client
    await client.aclose()


async def test_many_concurrent_commands_share_a_pool_of_two(small: Redis) -> None:
    keys = [f"gk:test:pool:{i}" for i in range(300)]
    assert all(await asyncio.gather(*(small.set(k, i, px=5000) for i, k in enumerate(keys))))
    values = await asyncio.gather(*(small.get(k) for k in keys))
    assert values == [str(i).encode() for i in range(300)]
    assert _opened(_pool(small)) == 2


async def test_a_waiting_command_gets_the_first_connection_given_back(small: Redis) -> None:
    # Both connections held by blocking reads; a third command waits, and runs once one ends.
    blocked = [asyncio.ensure_future(small.blpop([f"gk:test:none:{i}"], 0.2)) for i in (1, 2)]
    await asyncio.sleep(0.05)
    assert _pool(small)._in_use_connections and not _pool(small).can_get_connection()
    assert await small.ping()
    assert await asyncio.gather(*blocked) == [None, None]


async def test_a_wait_past_pool_timeout_is_a_connection_error(redis_url: str) -> None:
    client = redis_client(redis_url, max_connections=1, pool_timeout=0.05)
    held = asyncio.ensure_future(client.blpop(["gk:test:none"], 0.5))
    await asyncio.sleep(0.05)
    with pytest.raises(PoolTimeout, match=r"no free Redis connection within 0\.05 s"):
        await client.ping()
    assert await held is None
    assert await client.ping()  # the pool works again once the connection is back
    await client.aclose()


async def _quota_with_busy_pool(redis_url: str) -> tuple[FailoverQuotaStore, asyncio.Future[Any]]:
    store = open_quota_store(
        redis_url, prefix=unique_prefix(), timeout=1.0, max_connections=1, pool_timeout=0.05
    )
    assert isinstance(store, FailoverQuotaStore) and isinstance(store.store, RedisQuotaStore)
    client = store.store.client
    assert isinstance(client, Redis)
    held = asyncio.ensure_future(client.blpop(["gk:test:none"], 0.5))
    await asyncio.sleep(0.05)
    return store, held


async def test_a_quota_without_a_free_connection_follows_on_store_error(redis_url: str) -> None:
    store, held = await _quota_with_busy_pool(redis_url)
    with pytest.raises(QuotaStoreError) as caught:
        await store.acquire([bucket(on_store_error="deny")])
    assert caught.value.status == 503 and caught.value.code == "quota_store_unavailable"
    result = await store.acquire([bucket(key="subject:s2:requests", on_store_error="allow")])
    assert result.allowed and result.unchecked == ("requests",)
    # Counted as a slow store (failure_threshold timeouts in a row), not a refused connection:
    # one busy pool does not open the circuit breaker.
    assert store.counters["store_timeouts"] == 2 and store.up
    assert await held is None
    assert (await store.acquire([bucket(on_store_error="deny")])).allowed
    await store.aclose()


async def test_settings_size_the_pools_of_the_quota_store_and_the_vault(redis_url: str) -> None:
    settings = Settings.model_validate(
        {"quota": {"storage": redis_url, "max_connections": 3, "pool_timeout": 0.5}}
    )
    store = _quota_store(settings)
    assert isinstance(store, FailoverQuotaStore) and isinstance(store.store, RedisQuotaStore)
    vault = _vault(settings)
    assert isinstance(vault, RedisVault)
    for client in (store.store.client, vault.client):
        assert isinstance(client, Redis)
        pool = _pool(client)
        assert (pool.max_connections, pool.timeout) == (3, 0.5)
    await store.aclose()
    await vault.aclose()


def test_a_sentinel_primary_gets_the_waiting_pool_too() -> None:
    client = redis_client(
        "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster", max_connections=7, pool_timeout=0.3
    )
    assert isinstance(client, Redis)
    pool = _pool(client)
    assert (pool.max_connections, pool.timeout) == (7, 0.3)


async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(
    redis_url: str,
) -> None:
    # The lean checkout still checks the connection it takes, as redis-py's pool does.
    client = redis_client(redis_url, max_connections=1)
    assert isinstance(client, Redis)
    assert await client.client_setname("gk-test-lean")
    killer = redis_client(redis_url)
    assert isinstance(killer, Redis)
    idle = _pool(client)._available_connections[0]
    assert await killer.execute_command("CLIENT", "KILL", "ADDR", await _address(client)) == 1
    await asyncio.sleep(0.1)  # the close reaches this process
    assert await client.ping()
    assert _opened(_pool(client)) == 1 and _pool(client)._available_connections[0] is idle
    assert await client.client_getname() is None  # a new connection (the name was not kept)
    await killer.aclose()
    await client.aclose()


async def _address(client: Redis) -> str:
    info = await client.client_info()
    return str(info["addr"])
