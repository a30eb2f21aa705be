"""What every quota store does, on each backend: memory, one Redis, a Redis Cluster."""

from __future__ import annotations

import math

import pytest

from gatekeeper.quota import QuotaAdjustment, rate_limit_headers
from tests.quota.conftest import StoreFactory, bucket, level, window


async def test_bucket_admits_its_capacity_then_refuses(new_store: StoreFactory) -> None:
    store = new_store()
    spec = bucket(capacity=5, rate=1, period=3600)
    results = [await store.acquire([spec]) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    refused = results[-1]
    assert refused.refused is not None and refused.refused.name == "requests"
    # One token an hour: the next one is (almost) an hour away.
    assert 3500 <= refused.retry_after <= 3600
    headers = dict(rate_limit_headers(refused))
    assert headers[b"retry-after"] == str(refused.retry_after).encode()
    assert headers[b"ratelimit"].startswith(b'"requests";r=0;t=')


CASES = [
    pytest.param([bucket("subject:s1:a", capacity=5), bucket("subject:s1:b", capacity=1)], 1,
                 id="second-bucket-refuses"),
    pytest.param([bucket("subject:s1:a", capacity=1), bucket("org:o1:b", capacity=5)], 0,
                 id="first-bucket-refuses-other-owner"),
    pytest.param([bucket("subject:s1:a", capacity=5), window("org:o1:m", capacity=1)], 1,
                 id="window-refuses"),
    pytest.param([window("org:o1:m", capacity=5), bucket("subject:s1:a", capacity=1),
                  bucket("org:o2:c", capacity=5)], 1,
                 id="bucket-refuses-between-window-and-other-org"),
]  # fmt: skip


@pytest.mark.parametrize(("specs", "refusing"), CASES)
async def test_all_or_nothing(new_store: StoreFactory, specs: list, refusing: int) -> None:
    store = new_store()
    assert (await store.acquire(specs)).allowed
    before = [await level(store, s) for s in specs]
    result = await store.acquire(specs)
    assert not result.allowed
    assert result.refused is not None and result.refused.key == specs[refusing].key
    # Not one of the request's quotas was debited by the refused request.
    assert [await level(store, s) for s in specs] == pytest.approx(before, abs=0.01)


async def test_a_refusal_names_the_quota_with_the_longest_wait(new_store: StoreFactory) -> None:
    store = new_store()
    fast = bucket("subject:s1:fast", capacity=1, rate=1, period=60)
    slow = bucket("subject:s1:slow", capacity=1, rate=1, period=3600)
    assert (await store.acquire([fast, slow])).allowed
    result = await store.acquire([fast, slow])
    assert result.refused is not None and result.refused.name == "slow"
    assert result.retry_after > 3000


@pytest.mark.parametrize(
    ("capacity", "costs", "admitted"),
    [
        pytest.param(100, [40, 40, 40], [True, True, False], id="third-overflows"),
        pytest.param(100, [40, 60, 1], [True, True, False], id="exactly-full"),
        pytest.param(100, [101], [False], id="cost-above-capacity"),
        pytest.param(100, [0, 100, 0], [True, True, True], id="zero-costs-pass"),
    ],
)
async def test_window_counts_costs(
    new_store: StoreFactory, capacity: int, costs: list[int], admitted: list[bool]
) -> None:
    store = new_store()
    got = [(await store.acquire([window(capacity=capacity, cost=c)])).allowed for c in costs]
    assert got == admitted


async def test_window_refusal_waits_until_the_window_ends(new_store: StoreFactory) -> None:
    store = new_store()
    spec = window(capacity=1, span="day")
    assert (await store.acquire([spec])).allowed
    refused = await store.acquire([spec])
    assert not refused.allowed and refused.refused is not None
    start = refused.refused.window_start
    assert start is not None and start % 86_400 == 0
    assert 1 <= refused.retry_after <= 86_400


async def test_a_request_costing_more_than_capacity_is_told_to_come_back_later(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    result = await store.acquire([bucket(capacity=10, cost=11)])
    assert not result.allowed
    assert result.refused is not None and math.isinf(result.refused.retry_after_seconds)
    assert result.retry_after == 86_400


async def test_refund_never_overflows_capacity(new_store: StoreFactory) -> None:
    store = new_store()
    spec = bucket(capacity=100, cost=30, unit="tokens")
    result = await store.acquire([spec])
    await store.adjust([QuotaAdjustment(spec, -50, result.states[0].window_start)])
    assert await level(store, spec) == pytest.approx(100, abs=0.01)


async def test_a_charge_beyond_the_reservation_is_a_debt(new_store: StoreFactory) -> None:
    store = new_store()
    spec = bucket(capacity=100, cost=30, unit="tokens")
    assert (await store.acquire([spec])).allowed
    await store.adjust([QuotaAdjustment(spec, 120)])  # used 150 of a 100-token bucket
    assert await level(store, spec) == 0  # shown as 0 left…
    refused = await store.acquire([spec.model_copy(update={"cost": 1})])
    assert not refused.allowed  # …and the next request waits until the debt is refilled
    assert refused.retry_after >= 50 * 864  # 51 tokens at one a day


async def test_window_adjustments(new_store: StoreFactory) -> None:
    store = new_store()
    spec = window(capacity=100, cost=60)
    charged = await store.acquire([spec])
    start = charged.states[0].window_start
    assert await level(store, spec) == 40
    await store.adjust([QuotaAdjustment(spec, -100, start)])  # a refund never goes below 0 used
    assert await level(store, spec) == 100
    await store.adjust([QuotaAdjustment(spec, 70, start)])
    assert await level(store, spec) == 30
    # A refund for a window that already ended gives nothing back to the current one.
    await store.adjust([QuotaAdjustment(spec, -70, start - 86_400 * 366)])
    assert await level(store, spec) == 30


async def test_buckets_refill_over_time(new_store: StoreFactory) -> None:
    import asyncio

    store = new_store()
    spec = bucket(capacity=2, rate=1, period=0.4)  # one token every 400 ms
    assert (await store.acquire([spec])).allowed
    assert (await store.acquire([spec])).allowed
    assert not (await store.acquire([spec])).allowed
    await asyncio.sleep(0.9)
    assert (await store.acquire([spec])).allowed


async def test_health_reports_up(new_store: StoreFactory) -> None:
    report = await new_store().health()
    assert report.ok and not report.degraded
    assert report.detail["state"] == "up"
    assert report.detail["backend"]
