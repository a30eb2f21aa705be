"""The memory store and the Redis script agree, operation by operation, on any sequence."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.contract import QuotaSpec
from gatekeeper.quota import MemoryQuotaStore, QuotaAdjustment, QuotaStore, open_quota_store
from tests.quota.conftest import bucket, level, unique_prefix, window

_examples = itertools.count()

# (quota index, cost) lists are requests; (quota index, delta) with a flag are adjustments.
requests = st.lists(
    st.tuples(st.sampled_from([0, 1, 2]), st.integers(min_value=0, max_value=4)),
    min_size=1,
    max_size=3,
    unique_by=lambda pair: pair[0],
)
adjustments = st.tuples(st.sampled_from([0, 1, 2]), st.integers(min_value=-6, max_value=6))
operations = st.lists(st.one_of(requests, adjustments), min_size=1, max_size=25)


def quotas(n: int) -> list[QuotaSpec]:
    # Buckets that never refill and a yearly window: no clock difference can matter.
    return [
        bucket(f"subject:p{n}:a", capacity=5, rate=0),
        bucket(f"org:p{n}:b", capacity=8, rate=0),
        window(f"org:p{n}:w", capacity=10, span="year"),
    ]


async def replay(store: QuotaStore, specs: list[QuotaSpec], ops: list) -> list:
    trace: list = []
    for op in ops:
        if isinstance(op, list):
            chosen = [specs[i].model_copy(update={"cost": cost}) for i, cost in op]
            result = await store.acquire(chosen)
            trace.append(("acquire", result.allowed))
            if result.allowed:
                trace.append([round(s.remaining, 6) for s in result.states])
        else:
            index, delta = op
            window_start = None
            if specs[index].kind == "window":
                probe = await store.acquire([specs[index].model_copy(update={"cost": 0})])
                window_start = probe.states[0].window_start
            await store.adjust([QuotaAdjustment(specs[index], delta, window_start)])
        trace.append([round(await level(store, s), 6) for s in specs])
    return trace


@pytest.mark.parametrize("backend", ["redis_url", "cluster_url"])
@settings(max_examples=40, deadline=None)
@given(ops=operations)
async def test_memory_and_redis_agree(
    request: pytest.FixtureRequest, backend: str, ops: list
) -> None:
    n = next(_examples)
    specs = quotas(n)
    remote = open_quota_store(
        request.getfixturevalue(backend), prefix=f"prop{n}-{unique_prefix()}", timeout=5.0
    )
    try:
        assert await replay(MemoryQuotaStore(), specs, ops) == await replay(remote, specs, ops)
    finally:
        await remote.aclose()


@settings(max_examples=200, deadline=None)
@given(ops=operations)
async def test_levels_stay_within_capacity_and_refusals_change_nothing(ops: list) -> None:
    store = MemoryQuotaStore()
    specs = quotas(0)
    for op in ops:
        if not isinstance(op, list):
            continue
        before = [await level(store, s) for s in specs]
        chosen = [specs[i].model_copy(update={"cost": cost}) for i, cost in op]
        result = await store.acquire(chosen)
        after = [await level(store, s) for s in specs]
        assert all(0 <= v <= s.capacity for v, s in zip(after, specs, strict=True))
        if not result.allowed:
            assert after == before
