from __future__ import annotations

import pytest

from gatekeeper.contract import QuotaSpec
from gatekeeper.quota import MemoryQuotaStore, rate_limit_headers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(
    key: str = "k", capacity: int = 10, rate: float = 10, period: float = 60, cost: int = 1
) -> QuotaSpec:
    return QuotaSpec(name=key, key=key, capacity=capacity, rate=rate, period=period, cost=cost)


async def test_bucket_admits_capacity_then_refuses() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    results = [await store.acquire([spec()]) for _ in range(11)]
    assert [r.allowed for r in results] == [True] * 10 + [False]
    refused = results[-1]
    assert refused.retry_after == 6  # one token every 6 s
    headers = dict(rate_limit_headers(refused))
    assert headers[b"retry-after"] == b"6"
    assert headers[b"ratelimit-policy"] == b'"k";q=10;w=60'
    assert headers[b"ratelimit"].startswith(b'"k";r=0;t=')


async def test_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    for _ in range(10):
        await store.acquire([spec()])
    clock.now += 12  # two tokens back
    assert [(await store.acquire([spec()])).allowed for _ in range(3)] == [True, True, False]


async def test_refill_never_exceeds_capacity() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    await store.acquire([spec()])
    clock.now += 10_000
    result = await store.acquire([spec()])
    assert result.states[0].remaining == 9


async def test_all_or_nothing_across_buckets() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    big, small = spec("big", capacity=100), spec("small", capacity=1)
    assert (await store.acquire([big, small])).allowed
    result = await store.acquire([big, small])
    assert not result.allowed and result.refused is not None and result.refused.key == "small"
    # The big bucket was not debited by the refused request.
    assert (await store.acquire([big])).states[0].remaining == 98


@pytest.mark.parametrize("elapsed", [0.0, 0.001, 5.999])
async def test_retry_after_is_never_zero(elapsed: float) -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    await store.acquire([spec(capacity=1)])
    clock.now += elapsed
    result = await store.acquire([spec(capacity=1)])
    assert not result.allowed and result.retry_after >= 1


async def test_headers_describe_the_most_constrained_quota() -> None:
    store = MemoryQuotaStore(Clock())
    result = await store.acquire([spec("roomy", capacity=100), spec("tight", capacity=2)])
    headers = dict(rate_limit_headers(result))
    assert headers[b"ratelimit"].startswith(b'"tight";r=1')
    assert b"retry-after" not in headers
