"""Deferred settlement: the corrections after responses wait a few milliseconds in memory and
reach Redis together, merged, with the same end state as writing each one at once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.contract import QuotaSpec
from gatekeeper.quota import (
    FailoverQuotaStore,
    MemoryQuotaStore,
    QuotaAdjustment,
    QuotaStore,
    RedisQuotaStore,
    open_quota_store,
)
from gatekeeper.quota.batching import SettlementQueue
from tests.quota.conftest import bucket, eventually, level, unique_prefix, window
from tests.servers import RedisProcess

NEVER = 3600.0  # an interval no test waits out: only a count, a flush or aclose sends
BIG = 10**6
_examples = itertools.count()


def deferred(
    uri: str, *, interval: float = NEVER, batch: int = 256, **options: float
) -> FailoverQuotaStore:
    """A Redis store (behind the failover layer) whose settlements wait ``interval`` seconds."""
    store = open_quota_store(
        uri,
        prefix=unique_prefix(),
        timeout=options.get("timeout", 2.0),
        retry_interval=options.get("retry_interval", 1.0),
        settle_interval=interval,
        settle_batch=batch,
    )
    assert isinstance(store, FailoverQuotaStore)
    return store


def queue_of(store: FailoverQuotaStore) -> SettlementQueue:
    inner = store.store
    assert isinstance(inner, RedisQuotaStore) and inner.settlements is not None
    return inner.settlements


async def flush(store: FailoverQuotaStore) -> None:
    inner = store.store
    assert isinstance(inner, RedisQuotaStore)
    await inner.flush()


# A request: for some of the three quotas, (reserved, used). Used may exceed the reservation
# (an extra charge) or fall short of it (a refund), as a real settlement does.
request_ops = st.dictionaries(
    st.sampled_from([0, 1, 2]),
    st.tuples(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=80)),
    min_size=1,
)
operations = st.lists(st.one_of(request_ops, st.just("flush")), min_size=1, max_size=30)


def three_quotas(n: int) -> list[QuotaSpec]:
    # Two owners (two cluster slots); nothing refills, no request is ever refused.
    return [
        bucket(f"subject:m{n}:tokens", capacity=BIG, rate=0, unit="tokens"),
        bucket(f"org:m{n}:tokens", capacity=BIG, rate=0, unit="tokens"),
        window(f"org:m{n}:tokens_month", capacity=BIG, span="year"),
    ]


async def run(store: QuotaStore, specs: list[QuotaSpec], ops: list) -> None:
    for op in ops:
        if op == "flush":
            if isinstance(store, FailoverQuotaStore):
                await flush(store)
            continue
        chosen = [specs[i].model_copy(update={"cost": reserved}) for i, (reserved, _) in op.items()]
        result = await store.acquire(chosen)
        assert result.allowed
        await store.adjust(
            [
                QuotaAdjustment(spec, used - spec.cost, state.window_start)
                for spec, (_, used), state in zip(chosen, op.values(), result.states, strict=True)
            ]
        )


@pytest.mark.parametrize("backend", ["redis_url", "cluster_url"])
@settings(max_examples=30, deadline=None)
@given(ops=operations)
async def test_merged_settlements_end_where_settling_one_by_one_ends(
    request: pytest.FixtureRequest, backend: str, ops: list
) -> None:
    specs = three_quotas(next(_examples))
    one_by_one = MemoryQuotaStore()
    await run(one_by_one, specs, ops)
    store = deferred(request.getfixturevalue(backend))
    try:
        await run(store, specs, ops)
        # However many settlements wait, each quota holds at most a charge and a refund.
        assert len(queue_of(store)) <= 2 * len(specs)
        await flush(store)
        assert [await level(store, s) for s in specs] == [await level(one_by_one, s) for s in specs]
        assert store.counters["adjustments_lost"] == 0
    finally:
        await store.aclose()


async def test_the_interval_sends_what_is_pending(redis_url: str) -> None:
    store = deferred(redis_url, interval=0.05)
    spec = bucket(capacity=100, cost=40, unit="tokens")
    try:
        assert (await store.acquire([spec])).allowed
        for _ in range(3):
            await store.adjust([QuotaAdjustment(spec, -10)])
        assert len(queue_of(store)) == 1  # queued and merged, not yet written

        async def refunded() -> bool:
            return await level(store, spec) == pytest.approx(90)

        assert await eventually(refunded)
        assert len(queue_of(store)) == 0
    finally:
        await store.aclose()


async def test_enough_pending_corrections_are_sent_without_waiting(redis_url: str) -> None:
    store = deferred(redis_url, batch=4)
    specs = [bucket(f"subject:c{i}:tokens", capacity=100, cost=50, unit="tokens") for i in range(4)]
    try:
        for spec in specs:
            assert (await store.acquire([spec])).allowed
        for spec in specs[:3]:
            await store.adjust([QuotaAdjustment(spec, -20)])
        # Three distinct corrections, an hour's interval: nothing written yet.
        assert [await level(store, s) for s in specs] == pytest.approx([50] * 4)
        await store.adjust([QuotaAdjustment(specs[3], -20)])  # the fourth: sent at once

        async def all_refunded() -> bool:
            return [await level(store, s) for s in specs] == pytest.approx([70] * 4)

        assert await eventually(all_refunded)
    finally:
        await store.aclose()


async def test_aclose_writes_what_is_pending(redis_url: str) -> None:
    store = deferred(redis_url)
    prefix = store.store.prefix  # type: ignore[attr-defined]
    spec = bucket(capacity=100, cost=30, unit="tokens")
    assert (await store.acquire([spec])).allowed
    await store.adjust([QuotaAdjustment(spec, -25)])
    await store.adjust([QuotaAdjustment(spec, 5)])
    await store.aclose()
    reader = open_quota_store(redis_url, prefix=prefix, timeout=2.0)
    try:
        assert await level(reader, spec) == pytest.approx(100 - 30 + 25 - 5)
    finally:
        await reader.aclose()


async def test_a_flush_while_redis_is_down_counts_the_lost_settlements(
    redis_process: RedisProcess,
) -> None:
    store = deferred(redis_process.url, interval=0.05, timeout=0.5, retry_interval=60)
    spec = bucket(capacity=100, cost=30, unit="tokens")
    assert (await store.acquire([spec])).allowed
    redis_process.kill()
    for _ in range(3):  # three responses settle: none of them sees an error
        await store.adjust([QuotaAdjustment(spec, -5)])

    async def lost() -> bool:
        return store.counters["adjustments_lost"] == 3

    assert await eventually(lost)
    report = (await store.health()).detail
    assert (report["state"], report["store"]) == ("degraded", "down")
    assert report["counters"]["adjustments_lost"] == 3
    # Known down: the next settlement is lost at once, as an immediate one would be.
    await store.adjust([QuotaAdjustment(spec, -5)])
    assert store.counters["adjustments_lost"] == 4
    assert len(queue_of(store)) == 0
    await store.aclose()


async def test_aclose_while_redis_is_down_counts_instead_of_raising(
    redis_process: RedisProcess,
) -> None:
    store = deferred(redis_process.url, timeout=0.5)
    spec = bucket(capacity=100, cost=30, unit="tokens")
    assert (await store.acquire([spec])).allowed
    await store.adjust([QuotaAdjustment(spec, -5)])
    await store.adjust([QuotaAdjustment(spec, -5)])
    redis_process.kill()
    await store.aclose()
    assert store.counters["adjustments_lost"] == 2


async def test_interval_zero_writes_each_settlement_at_once(redis_url: str) -> None:
    store = open_quota_store(redis_url, prefix=unique_prefix(), timeout=2.0, settle_interval=0)
    assert isinstance(store, FailoverQuotaStore)
    assert store.store.settlements is None  # type: ignore[attr-defined]
    spec = bucket(capacity=100, cost=30, unit="tokens")
    try:
        assert (await store.acquire([spec])).allowed
        await store.adjust([QuotaAdjustment(spec, -10)])
        assert await level(store, spec) == pytest.approx(80)  # no flush, no wait
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("kind", "reserved", "deltas", "one_by_one", "merged"),
    [
        pytest.param("bucket", 0, [-10, 5], 95, 100, id="full-bucket-refund-then-charge"),
        pytest.param("bucket", 0, [5, -10], 100, 100, id="full-bucket-charge-then-refund"),
        pytest.param("bucket", 20, [-3, 7, -2], 78, 78, id="bucket-below-its-cap"),
        pytest.param("window", 0, [-10, 5], 95, 100, id="empty-window-refund-then-charge"),
        pytest.param("window", 0, [5, -3], 98, 98, id="window-charge-then-refund"),
        pytest.param("window", 20, [-3, 7, -2], 78, 78, id="window-above-zero"),
    ],
)  # fmt: skip
async def test_merging_differs_only_where_a_refund_hits_its_cap(
    redis_url: str, kind: str, reserved: int, deltas: list[int], one_by_one: int, merged: int
) -> None:
    """Documented in docs/quotas.md: merged, an interval's charges land before its refunds."""
    spec = bucket(capacity=100, unit="tokens") if kind == "bucket" else window(capacity=100)
    now = open_quota_store(redis_url, prefix=unique_prefix(), timeout=2.0)
    later = deferred(redis_url)
    try:
        for store in (now, later):
            start = (await store.acquire([spec.model_copy(update={"cost": reserved})])).states[0]
            for delta in deltas:
                await store.adjust([QuotaAdjustment(spec, delta, start.window_start)])
        await flush(later)
        assert await level(now, spec) == pytest.approx(one_by_one)
        assert await level(later, spec) == pytest.approx(merged)
    finally:
        await now.aclose()
        await later.aclose()


async def test_a_window_that_ended_keeps_the_charges_its_refunds_would_cancel(
    redis_url: str,
) -> None:
    # A settlement names the window its request was charged in; refunds for an ended window
    # give nothing back, its extra charges still count (now). Merged: the same.
    spec = window(capacity=100)
    year_ago = (await open_quota_store("memory://").acquire([spec])).states[0].window_start
    assert year_ago is not None
    year_ago -= 86_400 * 366
    store = deferred(redis_url)
    try:
        await store.adjust([QuotaAdjustment(spec, 8, year_ago)])
        await store.adjust([QuotaAdjustment(spec, -6, year_ago)])
        await flush(store)
        assert await level(store, spec) == pytest.approx(92)
    finally:
        await store.aclose()


async def test_the_refund_of_a_request_refused_in_another_slot_is_not_deferred(
    cluster_url: str,
) -> None:
    store = deferred(cluster_url)
    roomy = bucket("subject:r1:tokens", capacity=100, cost=10, unit="tokens")
    tight = bucket("org:r9:tight", capacity=5, cost=10)
    try:
        refused = await store.acquire([roomy, tight])
        assert not refused.allowed
        assert len(queue_of(store)) == 0
        assert await level(store, roomy) == pytest.approx(100)  # given back before it answered
    finally:
        await store.aclose()
