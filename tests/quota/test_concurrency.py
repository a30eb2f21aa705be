"""Exactness under load: two processes, many concurrent requests each, against shared quotas.

Each process opens its own store (as two replicas of an API would) and runs many concurrent
acquire loops for a while. A store is exact when the requests admitted over all processes are
at least the binding capacity and at most capacity + refill over the time they ran.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest

from gatekeeper.contract import QuotaSpec
from gatekeeper.quota import MemoryQuotaStore, open_quota_store
from tests.quota.conftest import bucket, unique_prefix

PROCESSES = 2
WORKERS = 24
SECONDS = 0.8


async def _hammer(uri: str, prefix: str, specs: list[dict[str, Any]], go: Any) -> dict[str, Any]:
    store = open_quota_store(uri, prefix=prefix, timeout=5.0)
    quota = [QuotaSpec.model_validate(s) for s in specs]
    await store.health()  # connected before the start signal
    await asyncio.to_thread(go.wait)
    admitted = refused = 0
    first = time.time()
    deadline, give_up = first + SECONDS, first + 60

    async def loop() -> None:
        # Each worker runs for SECONDS and until it has been refused once (so the bucket was
        # exhausted, however slow the machine is), but never past a minute.
        nonlocal admitted, refused
        seen_refusal = False
        while (time.time() < deadline or not seen_refusal) and time.time() < give_up:
            if (await store.acquire(quota)).allowed:
                admitted += 1
            else:
                refused += 1
                seen_refusal = True

    await asyncio.gather(*(loop() for _ in range(WORKERS)))
    last = time.time()
    await store.aclose()
    return {"admitted": admitted, "refused": refused, "first": first, "last": last}


def _process(uri: str, prefix: str, specs: list[dict[str, Any]], ready: Any, go: Any, out: Any):
    ready.release()
    out.put(asyncio.run(_hammer(uri, prefix, specs, go)))


def run_processes(uri: str, specs: list[QuotaSpec]) -> tuple[int, int, float]:
    """(admitted, attempts, seconds) over ``PROCESSES`` processes sharing ``specs``."""
    # A fork server imports gatekeeper once; each test's processes fork from it, quickly.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.quota.test_concurrency"])
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    prefix = unique_prefix()
    dumped = [s.model_dump() for s in specs]
    procs = [
        ctx.Process(target=_process, args=(uri, prefix, dumped, ready, go, out))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        assert ready.acquire(timeout=60)
    time.sleep(0.3)  # each has connected to Redis
    go.set()
    reports = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    admitted = sum(r["admitted"] for r in reports)
    attempts = admitted + sum(r["refused"] for r in reports)
    seconds = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    return admitted, attempts, seconds


@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_a_bucket_that_never_refills_admits_exactly_its_capacity(
    request: pytest.FixtureRequest, backend: str
) -> None:
    uri = request.getfixturevalue("redis_url" if backend == "redis" else "cluster_url")
    # Two quotas of two owners (two cluster slots): the subject's and the org's.
    specs = [
        bucket("subject:s1:requests", capacity=300, rate=0),
        bucket("org:o1:requests", capacity=250, rate=0),
    ]
    admitted, attempts, _ = run_processes(uri, specs)
    assert attempts > admitted, "the test did not push past the capacity"
    assert admitted == 250


def test_a_refilling_bucket_admits_capacity_plus_refill_and_no_more(redis_url: str) -> None:
    spec = bucket("subject:s1:requests", capacity=200, rate=100, period=1)
    admitted, attempts, seconds = run_processes(redis_url, [spec])
    assert attempts > admitted, "the test never hit the limit"
    assert 200 <= admitted <= 200 + 100 * seconds + 1


async def test_the_memory_store_is_exact_under_concurrent_requests() -> None:
    store = MemoryQuotaStore()
    spec = bucket(capacity=500, rate=0)
    results = await asyncio.gather(*(store.acquire([spec]) for _ in range(2000)))
    assert sum(r.allowed for r in results) == 500
