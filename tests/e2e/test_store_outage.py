"""Two replicas on one Redis, under a burst: the quota holds exactly while Redis is healthy, the
``local`` fallback stays within its documented bound when Redis dies mid-burst, and a ``deny``
quota admits nothing without Redis (docs/quotas.md, "How many `local` admits, at most")."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.servers import DemoServer, RedisProcess, demo_server

pytestmark = pytest.mark.e2e

FREE_CAPACITY, FREE_PER_SECOND = 10, 10 / 60  # policies/gatekeeper/config/tiers/data.json
PRO_CAPACITY, PRO_PER_SECOND = 60, 60 / 60
LOCAL_FRACTION = 0.5  # 1 / replicas
BODY = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}]}


@pytest.fixture
def replicas(tmp_path: Path, redis_process: RedisProcess) -> Iterator[list[DemoServer]]:
    env = {
        "GATEKEEPER_QUOTA__STORAGE": redis_process.url,
        "GATEKEEPER_QUOTA__LOCAL_FRACTION": str(LOCAL_FRACTION),
        "GATEKEEPER_SIGNALS__STORAGE": "memory://",
    }
    with ExitStack() as stack:
        yield [stack.enter_context(demo_server(tmp_path / f"r{i}", **env)) for i in (0, 1)]


async def burst(
    servers: list[DemoServer], key: str, count: int, on_done: int = 0, then: object = None
) -> tuple[Counter[str], float]:
    """``count`` concurrent requests spread over ``servers``: statuses with reason codes."""
    statuses: Counter[str] = Counter()
    # keepalive_expiry under uvicorn's 5 s keep-alive: never reuse a connection the server is
    # closing (an httpx.ReadError under load that has nothing to do with quotas).
    limits = httpx.Limits(max_connections=100, keepalive_expiry=1.0)
    clients = [httpx.AsyncClient(base_url=s.url, timeout=30, limits=limits) for s in servers]
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        response = await clients[i % len(clients)].post(
            "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
        )
        code = "" if response.status_code == 200 else response.json()["error"]["code"]
        statuses[f"{response.status_code} {code}".strip()] += 1
        done += 1
        if done == on_done and callable(then):
            then()

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    return statuses, elapsed


async def test_a_healthy_redis_admits_exactly_the_bucket_across_replicas(
    replicas: list[DemoServer],
) -> None:
    """Exactly the bucket, plus what it refilled while the burst lasted; never a 503."""
    for key, capacity, per_second in (
        ("gk-demo-free", FREE_CAPACITY, FREE_PER_SECOND),
        # pro: five quotas, one of them 'deny': a false outage refuses the tier with 503.
        ("gk-demo-pro", PRO_CAPACITY, PRO_PER_SECOND),
    ):
        statuses, elapsed = await burst(replicas, key, 500)
        admitted = statuses["200"]
        assert capacity <= admitted <= capacity + math.ceil(elapsed * per_second), statuses
        assert statuses["429 quota_exceeded"] == 500 - admitted, statuses  # no false outage


async def test_redis_killed_mid_burst_local_stays_within_its_bound_and_deny_admits_nothing(
    replicas: list[DemoServer], redis_process: RedisProcess
) -> None:
    statuses, elapsed = await burst(replicas, "gk-demo-free", 500, 5, redis_process.kill)
    admitted = statuses["200"]
    refill = math.ceil(elapsed * FREE_PER_SECOND * (1 + len(replicas) * LOCAL_FRACTION))
    bound = FREE_CAPACITY + len(replicas) * math.floor(FREE_CAPACITY * LOCAL_FRACTION) + refill
    assert FREE_CAPACITY <= admitted <= bound, (statuses, bound)
    assert sum(statuses.values()) == 500 and set(statuses) <= {"200", "429 quota_exceeded"}

    # pro's reasoning_tokens quota is 'deny': nothing gets through without Redis.
    pro, _ = await burst(replicas, "gk-demo-pro", 100)
    assert pro == Counter({"503 quota_store_unavailable": 100}), pro
