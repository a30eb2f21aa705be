"""Redis killed, paused and restarted mid-test: each ``on_store_error`` mode does what
docs/quotas.md says, nothing crashes, and the store comes back by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from gatekeeper.errors import QuotaStoreError
from gatekeeper.quota import FailoverQuotaStore, QuotaAdjustment, open_quota_store
from tests.quota._app import HEADERS, chat_body, protected_app, serve
from tests.quota.conftest import bucket, eventually, level, window
from tests.servers import RedisProcess


def failover(server: RedisProcess, **options: float) -> FailoverQuotaStore:
    store = open_quota_store(
        server.url,
        timeout=options.get("timeout", 1.0),
        retry_interval=0.1,
        local_fraction=options.get("local_fraction", 0.25),
    )
    assert isinstance(store, FailoverQuotaStore)
    return store


async def test_deny_refuses_while_redis_is_down(redis_process: RedisProcess) -> None:
    store = failover(redis_process)
    spec = bucket(on_store_error="deny")
    assert (await store.acquire([spec])).allowed
    redis_process.kill()
    with pytest.raises(QuotaStoreError) as caught:
        await store.acquire([spec])
    assert caught.value.status == 503 and caught.value.code == "quota_store_unavailable"
    assert store.counters["denied"] == 1
    await store.aclose()


async def test_allow_lets_requests_through_unchecked_and_counts_them(
    redis_process: RedisProcess,
) -> None:
    store = failover(redis_process)
    spec = bucket(capacity=1, on_store_error="allow")
    assert (await store.acquire([spec])).allowed
    redis_process.kill()
    results = [await store.acquire([spec]) for _ in range(5)]
    assert all(r.allowed and r.unchecked == ("requests",) for r in results)
    assert store.counters["allowed_unchecked"] == 5
    await store.aclose()


async def test_local_enforces_a_fraction_of_the_limit_in_process(
    redis_process: RedisProcess,
) -> None:
    store = failover(redis_process, local_fraction=0.25)
    spec = bucket(capacity=12, on_store_error="local")
    redis_process.kill()
    results = [await store.acquire([spec]) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]  # 25 % of 12
    assert results[0].states[0].source == "local"
    assert results[0].states[0].capacity == 3
    assert results[-1].retry_after >= 1
    await store.aclose()


async def test_one_deny_quota_refuses_the_request_whatever_the_others_say(
    redis_process: RedisProcess,
) -> None:
    store = failover(redis_process)
    redis_process.kill()
    specs = [
        bucket("subject:s1:a", on_store_error="allow"),
        window(on_store_error="local"),
        bucket("org:o1:c", on_store_error="deny"),
    ]
    with pytest.raises(QuotaStoreError, match="'c'"):
        await store.acquire(specs)
    await store.aclose()


async def test_recovery_is_automatic_after_a_restart(redis_process: RedisProcess) -> None:
    store = failover(redis_process)
    spec = bucket(capacity=10, on_store_error="allow")
    assert (await store.acquire([spec])).allowed
    redis_process.kill()
    assert (await store.acquire([spec])).unchecked
    health = await store.health()
    assert health.ok and health.degraded  # served by on_store_error: degraded, not down
    assert (health.detail["state"], health.detail["store"]) == ("degraded", "down")
    assert health.detail["last_error"]
    redis_process.start()  # an empty Redis on the same port

    async def back() -> bool:
        result = await store.acquire([spec])
        return result.allowed and not result.unchecked

    assert await eventually(back)
    recovered = await store.health()
    assert recovered.detail["store"] == "up" and not recovered.degraded
    assert store.counters["recoveries"] == 1
    # Shared counting resumed: the new Redis holds the debits made since it came back.
    assert await level(store, spec) < 10
    await store.aclose()


async def test_a_slow_redis_times_out_into_the_fallback(redis_process: RedisProcess) -> None:
    store = failover(redis_process, timeout=0.05)
    spec = bucket(on_store_error="allow")
    assert (await store.acquire([spec])).allowed
    # Every client of this Redis waits for 600 ms, as behind a saturated or stalled server.
    redis_process.cli("CLIENT", "PAUSE", "600", "ALL")
    result = await store.acquire([spec])
    assert result.allowed and result.unchecked == ("requests",)
    health = (await store.health()).detail
    assert "no answer within 50 ms" in health["last_error"]
    assert health["counters"]["store_timeouts"] >= 1
    await asyncio.sleep(0.7)
    assert await eventually(lambda: _checked(store, spec))
    await store.aclose()


async def test_one_slow_reply_does_not_open_the_breaker_but_timeouts_in_a_row_do(
    redis_process: RedisProcess,
) -> None:
    store = open_quota_store(
        redis_process.url, timeout=0.05, retry_interval=30, failure_threshold=3
    )
    assert isinstance(store, FailoverQuotaStore)
    spec = bucket(on_store_error="allow")
    assert (await store.acquire([spec])).allowed
    redis_process.cli("CLIENT", "PAUSE", "2000", "ALL")
    first = await store.acquire([spec])
    assert first.unchecked == ("requests",) and store.up  # one timeout: still closed
    await store.acquire([spec])
    assert store.up
    await store.acquire([spec])
    assert not store.up  # three in a row: open
    calls = store.counters["store_errors"]
    for _ in range(5):  # open: requests use their mode without calling the store
        assert (await store.acquire([spec])).unchecked == ("requests",)
    assert store.counters["store_errors"] == calls
    assert store.counters["allowed_unchecked"] == 8
    await store.aclose()


async def test_a_refused_connection_opens_the_breaker_at_once(
    redis_process: RedisProcess,
) -> None:
    store = open_quota_store(redis_process.url, timeout=0.5, retry_interval=30)
    assert isinstance(store, FailoverQuotaStore)
    spec = bucket(on_store_error="allow")
    assert (await store.acquire([spec])).allowed
    redis_process.kill()
    assert (await store.acquire([spec])).unchecked == ("requests",)
    assert not store.up and store.counters["store_timeouts"] == 0
    await store.aclose()


async def test_a_saturated_event_loop_never_declares_a_healthy_redis_down(
    redis_process: RedisProcess,
) -> None:
    """The loop is blocked for far longer than the timeout while replies are on their way:
    every check is still answered by Redis, none falls back, and the breaker stays closed."""
    store = open_quota_store(redis_process.url, timeout=0.02, failure_threshold=1)
    assert isinstance(store, FailoverQuotaStore)
    spec = bucket(capacity=10**6, on_store_error="allow")
    assert (await store.acquire([spec])).allowed  # connected, script loaded

    async def hog() -> None:
        for _ in range(10):
            time.sleep(0.005)  # noqa: ASYNC251 (8 hogs: 40 ms turns, twice the timeout)
            await asyncio.sleep(0)

    hogs = [asyncio.create_task(hog()) for _ in range(8)]
    results = await asyncio.gather(*(store.acquire([spec]) for _ in range(300)))
    await asyncio.gather(*hogs)
    assert all(r.allowed and not r.unchecked for r in results)
    assert store.counters["store_errors"] == 0 and store.up
    assert round(await level(store, spec)) == 10**6 - 301  # each counted in Redis, once
    await store.aclose()


async def _checked(store: FailoverQuotaStore, spec: object) -> bool:
    result = await store.acquire([spec])  # type: ignore[list-item]
    return not result.unchecked


async def test_nothing_crashes_while_redis_dies_and_returns_under_load(
    redis_process: RedisProcess,
) -> None:
    store = failover(redis_process, timeout=0.5)
    specs = {
        "deny": bucket("subject:s1:d", capacity=10**6, on_store_error="deny"),
        "allow": bucket("subject:s1:a", capacity=10**6, on_store_error="allow"),
        "local": bucket("subject:s1:l", capacity=10**6, on_store_error="local"),
    }
    outcomes: dict[str, set[str]] = {mode: set() for mode in specs}
    stop = asyncio.Event()

    async def client(mode: str) -> None:
        while not stop.is_set():
            try:
                result = await store.acquire([specs[mode]])
            except QuotaStoreError:
                outcomes[mode].add("503")
            else:
                source = "unchecked" if result.unchecked else result.states[0].source
                outcomes[mode].add(source)
                await store.adjust(
                    [QuotaAdjustment(specs[mode], 1, None, s.source) for s in result.states]
                )
            await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(client(mode)) for mode in specs for _ in range(5)]
    await asyncio.sleep(0.3)
    redis_process.kill()
    await asyncio.sleep(0.4)
    redis_process.start()
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.gather(*tasks)  # no task raised anything but what it caught
    assert outcomes == {
        "deny": {"store", "503"},
        "allow": {"store", "unchecked"},
        "local": {"store", "local"},
    }
    await store.aclose()


@pytest.mark.parametrize(
    ("mode", "statuses"),
    [
        pytest.param("deny", [503, 503, 503], id="deny"),
        pytest.param("allow", [200, 200, 200], id="allow"),
        pytest.param("local", [200, 200, 429], id="local"),
    ],
)
async def test_over_http_each_mode_answers_as_documented(
    tmp_path: Path, redis_process: RedisProcess, mode: str, statuses: list[int]
) -> None:
    quota = {
        "name": "requests",
        "key": "subject:s1:requests",
        "unit": "requests",
        "capacity": 8,
        "rate": 8,
        "period": 3600,
        "on_store_error": mode,
    }
    app, _ = protected_app(
        tmp_path, redis_process.url, [quota], local_fraction=0.25, retry_interval=0.1
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.post("/v1/chat/completions", json=chat_body(), headers=HEADERS)
        assert ok.status_code == 200
        redis_process.kill()
        got = []
        for _ in statuses:
            response = await client.post("/v1/chat/completions", json=chat_body(), headers=HEADERS)
            got.append(response.status_code)
            if response.status_code == 503:
                assert response.json()["error"]["code"] == "quota_store_unavailable"
        assert got == statuses
        redis_process.start()

        async def recovered() -> bool:
            response = await client.post("/v1/chat/completions", json=chat_body(), headers=HEADERS)
            # The shared bucket again (capacity 8), not the local one (2).
            return response.headers.get("ratelimit-policy") == '"requests";q=8;w=3600'

        assert await eventually(recovered)
