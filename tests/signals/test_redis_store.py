"""Gateways sharing signals through a real Redis stream (tests/servers.py starts redis-server)."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from redis.asyncio import Redis

from gatekeeper.settings import SignalSettings
from gatekeeper.signals import Observation, RedisSignalStore, SignalStage, SignalState


def gateway(redis_url: str, key: str) -> RedisSignalStore:
    state = SignalState({"1h": 3600.0}, "1h")
    return RedisSignalStore(state, redis_url, key=key, flush_seconds=0.05, retention_seconds=3600)


@pytest.fixture
def key() -> str:
    return f"gk:test-signals:{uuid.uuid4().hex}"


def request(subject: str, *, links: tuple[str, ...] = ()) -> Observation:
    return Observation(time.time(), subject, requests=1, template="t", links=links)


async def test_one_gateways_requests_reach_the_other(redis_url: str, key: str) -> None:
    a, b = gateway(redis_url, key), gateway(redis_url, key)
    try:
        for _ in range(3):
            a.publish(request("s1", links=("payment:1",)))
        b.publish(request("s2", links=("payment:1",)))
        # Each gateway sees its own requests at once, without Redis ...
        assert a.state.read("s1", "t", (), time.time())[0].requests["1h"] == 3
        assert b.state.read("s1", "t", (), time.time())[0].requests["1h"] == 0
        await a.sync()
        await b.sync()
        await a.sync()
        # ... and the other's after one flush and one read, each counted once.
        for store in (a, b):
            own, cluster, _ = store.state.read("s2", "t", (), time.time())
            assert own.requests["1h"] == 1
            assert (cluster.size, cluster.requests["1h"]) == (2, 4)
        assert a.counters["published"] == 3 and a.counters["applied"] == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_new_gateway_replays_the_window(redis_url: str, key: str) -> None:
    a = gateway(redis_url, key)
    for _ in range(5):
        a.publish(request("s1"))
    await a.aclose()  # flushes what is buffered
    late = gateway(redis_url, key)
    try:
        await late.sync()
        assert late.state.read("s1", "t", (), time.time())[0].requests["1h"] == 5
    finally:
        await late.aclose()


@pytest.mark.parametrize(
    ("replay_seconds", "replayed"), [(None, {"recent"}), (86400.0, {"early", "recent"})]
)
async def test_a_new_gateway_replays_signals_replay_seconds_of_history(
    redis_url: str, key: str, replay_seconds: float | None, replayed: set[str]
) -> None:
    # Two entries another gateway published 3 hours and 10 minutes ago (the stream's ids are
    # the times they were added); a starting gateway replays the main window (an hour), or
    # signals.replay_seconds (flushes trim the stream to the same, with MINID's approximate
    # trimming: whole macro nodes, not to the entry).
    now = time.time()
    stream = f"{key}:events"
    client = Redis.from_url(redis_url)
    for subject, ago in (("early", 3 * 3600), ("recent", 600)):
        batch = orjson.dumps([Observation(now - ago, subject, requests=1).to_wire()])
        await client.xadd(stream, {"r": "other", "o": batch}, id=int((now - ago) * 1000))
    settings = SignalSettings(storage=redis_url, key_prefix=key, replay_seconds=replay_seconds)
    stage = SignalStage.from_settings(settings, "memory://")
    store = stage.store
    assert isinstance(store, RedisSignalStore) and store.key == stream
    try:
        await store.sync()
        seen = {
            subject
            for subject in ("early", "recent")
            if stage.state.read(subject, None, (), now)[0].requests["24h"] == 1
        }
        assert seen == replayed
    finally:
        await store.aclose()
        await client.aclose()


async def test_background_tasks_keep_gateways_in_step(redis_url: str, key: str) -> None:
    a, b = gateway(redis_url, key), gateway(redis_url, key)
    await a.start()
    await b.start()
    try:
        a.publish(request("s1"))
        for _ in range(100):
            if b.state.read("s1", None, (), time.time())[0].requests["1h"] == 1:
                break
            await asyncio.sleep(0.05)
        assert b.state.read("s1", None, (), time.time())[0].requests["1h"] == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_malformed_stream_entries_are_skipped(redis_url: str, key: str) -> None:
    client = Redis.from_url(redis_url)
    await client.xadd(key, {"r": "someone", "o": b"not json"})
    await client.xadd(key, {"r": "someone", "o": b'[["bad"]]'})
    await client.aclose()
    good = gateway(redis_url, key)
    other = gateway(redis_url, key)
    try:
        other.publish(request("s1"))
        await other.flush()
        await good.sync()
        assert good.counters["errors"] == 2
        assert good.state.read("s1", None, (), time.time())[0].requests["1h"] == 1
    finally:
        await good.aclose()
        await other.aclose()


async def test_another_gateways_big_entry_is_applied_in_slices(redis_url: str, key: str) -> None:
    """Half a second of a busy gateway is hundreds of observations in one stream entry: the
    event loop keeps serving (here: a ticker task runs) while they are applied, all of them."""
    busy, other = gateway(redis_url, key), gateway(redis_url, key)
    ticks = 0
    seen: list[int] = []  # the ticker's count at each observation applied
    reading = True
    apply = other.state.apply

    def counted(obs: Observation) -> None:
        seen.append(ticks)
        apply(obs)

    async def ticker() -> None:
        nonlocal ticks
        while reading:
            ticks += 1
            await asyncio.sleep(0)

    other.state.apply = counted  # type: ignore[method-assign]
    try:
        for index in range(1000):
            busy.publish(request(f"s{index % 10}"))
        await busy.flush()
        task = asyncio.create_task(ticker())
        assert await other.read_available() == 1000
        reading = False
        await task
        # The ticker ran between the slices: at least once per 64 observations applied.
        assert seen[-1] - seen[0] >= 1000 // 64
        assert other.state.read("s3", None, (), time.time())[0].requests["1h"] == 100
    finally:
        await busy.aclose()
        await other.aclose()


async def test_an_entry_malformed_past_its_first_slice_applies_nothing(
    redis_url: str, key: str
) -> None:
    rows = [request("s1").to_wire() for _ in range(200)]
    rows[150] = ["bad"]
    client = Redis.from_url(redis_url)
    await client.xadd(key, {"r": "someone", "o": orjson.dumps(rows)})
    await client.aclose()
    store = gateway(redis_url, key)
    try:
        await store.sync()
        assert store.counters["errors"] == 1
        assert store.state.read("s1", None, (), time.time())[0].requests["1h"] == 0
    finally:
        await store.aclose()


async def test_an_unreachable_redis_only_costs_the_shared_view(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = gateway("redis://127.0.0.1:1/0", "gk:nowhere")
    try:
        store.publish(request("s1"))
        await store.flush()  # fails: counted and logged, never raised
        assert store.counters["dropped"] == 1
        assert "signals store" in caplog.text
        assert store.state.read("s1", None, (), time.time())[0].requests["1h"] == 1
        assert (await store.health())["state"] == "down"
    finally:
        await store.aclose()
