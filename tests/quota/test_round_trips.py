"""The hot-path budget: one Redis round trip per request, counted by Redis itself."""

from __future__ import annotations

import redis.asyncio as aioredis

from gatekeeper.quota import open_quota_store
from tests.quota.conftest import RedisProcess, bucket, window

# Commands the scripts run inside Redis; they cost no round trip.
INSIDE_SCRIPTS = {"time", "get", "set"}
OBSERVER = {"info", "config|resetstat"}
# Said once per new pooled connection, not per request.
HANDSHAKE = {"hello", "client|setinfo"}


async def client_commands(observer: aioredis.Redis) -> dict[str, int]:
    stats = await observer.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {k: v for k, v in calls.items() if k not in INSIDE_SCRIPTS | OBSERVER | HANDSHAKE}


async def test_every_request_is_one_evalsha_whatever_its_quotas(
    redis_process: RedisProcess,
) -> None:
    store = open_quota_store(redis_process.url, timeout=2.0)
    observer = aioredis.Redis.from_url(redis_process.url)
    specs = [
        bucket("subject:s1:requests", capacity=1000),
        bucket("org:o1:tokens", capacity=10**6, cost=500, unit="tokens"),
        window("org:o1:tokens_month", capacity=10**7, cost=500),
    ]
    try:
        # The first call finds no script on this server: NOSCRIPT, then EVAL (which caches it).
        assert (await store.acquire(specs)).allowed
        first = await client_commands(observer)
        assert (first["evalsha"], first["eval"]) == (1, 1)
        await observer.config_resetstat()
        for _ in range(40):
            assert (await store.acquire(specs)).allowed
        refused = await store.acquire([bucket("subject:s2:requests", capacity=0)])
        assert not refused.allowed
        assert await client_commands(observer) == {"evalsha": 41}
    finally:
        await observer.aclose()
        await store.aclose()


async def test_a_restarted_redis_gets_the_script_again(redis_process: RedisProcess) -> None:
    store = open_quota_store(redis_process.url, timeout=2.0)
    try:
        assert (await store.acquire([bucket()])).allowed
        redis_process.cli("SCRIPT", "FLUSH")  # as after a restart or failover
        assert (await store.acquire([bucket()])).allowed
        assert int((await store.acquire([bucket()])).states[0].remaining) == 7
    finally:
        await store.aclose()


async def test_concurrent_requests_share_pipelines_and_stay_exact(
    redis_process: RedisProcess,
) -> None:
    import asyncio

    store = open_quota_store(redis_process.url, timeout=5.0)
    observer = aioredis.Redis.from_url(redis_process.url)
    spec = bucket("subject:s1:requests", capacity=150, rate=0)
    try:
        assert (await store.acquire([spec])).allowed
        await observer.config_resetstat()
        results = await asyncio.gather(*(store.acquire([spec]) for _ in range(400)))
        assert sum(r.allowed for r in results) == 149
        # One script call per request, however many travel together.
        assert await client_commands(observer) == {"evalsha": 400}
        # The server forgets its scripts (restart, failover): the calls that meet NOSCRIPT load
        # the script and run again; that costs a second round trip for them only.
        redis_process.cli("SCRIPT", "FLUSH")
        await observer.config_resetstat()
        again = await asyncio.gather(*(store.acquire([spec]) for _ in range(50)))
        assert not any(r.allowed for r in again)
        assert sum((await client_commands(observer)).values()) <= 2 * 50 + 1
    finally:
        await observer.aclose()
        await store.aclose()
