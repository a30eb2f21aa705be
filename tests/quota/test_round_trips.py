"""The hot-path budget: one Redis round trip per request, counted by Redis itself.

A request's quota check is one ``EVALSHA``; its token settlement after the response is queued
and sent with the other settlements of its interval (or of its batch): a share of one.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.quota import FailoverQuotaStore, QuotaAdjustment, RedisQuotaStore, open_quota_store
from tests.quota.conftest import bucket, unique_prefix, window
from tests.servers import RedisProcess

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


async def flush(store: object) -> None:
    """Send the settlements a store holds back (none when it writes them at once)."""
    assert isinstance(store, FailoverQuotaStore) and isinstance(store.store, RedisQuotaStore)
    await store.store.flush()


@pytest.mark.parametrize(
    ("interval", "subjects", "evalsha"),
    [
        # 40 checks + 4 sends of 10 corrections each: 1.1 per request.
        pytest.param(3600.0, 40, 44, id="deferred-40-subjects-sent-by-tens"),
        # One subject: its 40 corrections merge into one, sent by the final flush.
        pytest.param(3600.0, 1, 41, id="deferred-one-subject-merged"),
        pytest.param(0.0, 40, 80, id="immediate-two-per-request"),
    ],
)
async def test_each_request_costs_one_script_call_and_a_share_of_one(
    redis_process: RedisProcess, interval: float, subjects: int, evalsha: int
) -> None:
    """With settlements sent in batches of ``k`` corrections, a request costs at most
    1 + 1/k script calls (fewer when corrections of one quota merge); with
    ``settle_interval`` 0 it costs 2."""
    observer = aioredis.Redis.from_url(redis_process.url)
    store = open_quota_store(
        redis_process.url,
        prefix=unique_prefix(),
        timeout=2.0,
        settle_interval=interval,
        settle_batch=10,
    )
    try:
        await store.acquire([bucket("subject:warm:tokens")])  # loads the scripts
        await store.adjust([QuotaAdjustment(bucket("subject:warm:tokens"), -1)])
        await flush(store)
        await observer.config_resetstat()
        for i in range(40):
            owner = i % subjects
            spec = bucket(f"subject:q{owner}:tokens", capacity=10**6, cost=500, unit="tokens")
            result = await store.acquire([spec, window(f"org:q{owner}:month", capacity=10**7)])
            assert result.allowed
            await store.adjust([QuotaAdjustment(spec, -100)])
        await flush(store)
        assert await client_commands(observer) == {"evalsha": evalsha}
    finally:
        await observer.aclose()
        await store.aclose()


async def test_an_error_reply_fails_its_own_call_not_the_pipeline_it_shares(
    redis_process: RedisProcess,
) -> None:
    """The batcher writes calls itself and reads their replies one by one: a script error for
    one request (its key holds a hash) is that request's ``QuotaStoreError``; the requests sent
    in the same write are answered, and the connection stays usable."""
    import asyncio

    from gatekeeper.errors import QuotaStoreError
    from gatekeeper.quota.redis_store import storage_key

    prefix = unique_prefix()
    store = RedisQuotaStore(aioredis.Redis.from_url(redis_process.url), prefix=prefix, timeout=5.0)
    broken = bucket("subject:broken:requests")
    redis_process.cli("HSET", storage_key(prefix, broken.key), "field", "value")
    good = bucket("subject:s1:requests", capacity=1000, rate=0)
    try:
        specs = [[good] if i % 10 else [broken] for i in range(200)]
        results = await asyncio.gather(*(store.acquire(s) for s in specs), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 20
        assert all(isinstance(r, QuotaStoreError) and "WRONGTYPE" in str(r) for r in failed)
        assert all(r.allowed for r in results if not isinstance(r, BaseException))
        after = await store.acquire([good])
        assert after.allowed and after.states[0].remaining == 1000 - 181
    finally:
        await store.aclose()


@settings(max_examples=200)
@given(
    keys=st.lists(st.binary(max_size=40), max_size=8),
    args=st.lists(st.binary(max_size=40), max_size=8),
    adjust=st.booleans(),
)
def test_an_evalsha_is_packed_as_resp_says(
    keys: list[bytes], args: list[bytes], adjust: bool
) -> None:
    """The command with its head made once per shape is the generic RESP packing, byte for
    byte (the round-trip tests above run it against Redis)."""
    from gatekeeper.quota.batching import _evalsha, _pack
    from gatekeeper.quota.redis_store import ACQUIRE, ADJUST

    script = ADJUST if adjust else ACQUIRE
    expected = _pack(b"EVALSHA", script.sha_bytes, b"%d" % len(keys), *keys, *args)
    assert _evalsha(script, keys, args) == expected
