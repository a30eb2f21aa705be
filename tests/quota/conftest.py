"""Quota stores for the tests: memory, a real redis-server and a real 3-primary Redis Cluster."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from gatekeeper.contract import QuotaSpec
from gatekeeper.quota import QuotaStore, open_quota_store
from tests.servers import free_port, redis_cluster

_prefixes = itertools.count()

StoreFactory = Callable[[], QuotaStore]


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A real Redis Cluster of three primaries, for the session."""
    with redis_cluster(3) as url:
        yield url


def unique_prefix() -> str:
    """A key prefix of its own, so tests sharing one Redis never see each other's quotas."""
    return f"t{next(_prefixes)}-{free_port()}"


@pytest.fixture(params=["memory", "redis", "cluster"])
async def new_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Builds fresh, empty stores of one backend (every semantic test runs on each)."""
    made: list[QuotaStore] = []
    uri = {
        "memory": lambda: "memory://",
        "redis": lambda: request.getfixturevalue("redis_url"),
        "cluster": lambda: request.getfixturevalue("cluster_url"),
    }[request.param]()

    def make() -> QuotaStore:
        store = open_quota_store(uri, prefix=unique_prefix(), timeout=2.0)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


def bucket(
    key: str = "subject:s1:requests",
    *,
    capacity: int = 10,
    rate: float = 1,
    period: float = 86_400,
    cost: int = 1,
    unit: str = "requests",
    on_store_error: str = "deny",
) -> QuotaSpec:
    """A token bucket; the default refills one token a day, so tests see no refill."""
    return QuotaSpec.model_validate(
        {
            "name": key.rsplit(":", 1)[-1],
            "key": key,
            "capacity": capacity,
            "rate": rate,
            "period": period,
            "cost": cost,
            "unit": unit,
            "on_store_error": on_store_error,
        }
    )


def window(
    key: str = "org:o1:tokens_month",
    *,
    capacity: int = 100,
    cost: int = 1,
    span: str = "year",
    unit: str = "tokens",
    on_store_error: str = "deny",
) -> QuotaSpec:
    """A calendar window (a year by default, so no test straddles a boundary)."""
    return QuotaSpec.model_validate(
        {
            "name": key.rsplit(":", 1)[-1],
            "key": key,
            "kind": "window",
            "window": span,
            "capacity": capacity,
            "cost": cost,
            "unit": unit,
            "on_store_error": on_store_error,
        }
    )


async def level(store: QuotaStore, spec: QuotaSpec) -> float:
    """What is left in a quota (a cost-0 check debits nothing)."""
    result = await store.acquire([spec.model_copy(update={"cost": 0})])
    return result.states[0].remaining


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> bool:
    """Poll ``check`` until it holds (for effects that land just after a response)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()
