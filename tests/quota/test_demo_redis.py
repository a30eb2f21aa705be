"""The demo (what `make run` serves) with ``GATEKEEPER_QUOTA__STORAGE=redis://…``: its quotas
live in Redis, are shared by two demo processes, and model tokens are settled there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis

from gatekeeper.quota import open_quota_store
from tests.quota.conftest import eventually, unique_prefix, window
from tests.servers import demo_server

CHAT = {
    "model": "demo-reasoner",
    "max_tokens": 2000,
    "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}],
}
MONTH_CAP = 1_000_000  # the free tier's monthly tokens (policies/.../tiers/data.json)


async def month_used(redis_url: str, prefix: str, expected: int) -> float:
    store = open_quota_store(redis_url, prefix=prefix, timeout=2.0)
    spec = window("org:demo-org-free:tokens_month", capacity=MONTH_CAP, span="month", cost=0)

    async def used() -> float:
        return MONTH_CAP - (await store.acquire([spec])).states[0].remaining

    async def settled() -> bool:
        return await used() == expected

    try:
        await eventually(settled)
        return await used()
    finally:
        await store.aclose()


def test_two_demo_processes_share_quotas_in_redis(redis_url: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    env = {"GATEKEEPER_QUOTA__STORAGE": redis_url, "GATEKEEPER_QUOTA__KEY_PREFIX": prefix}
    with demo_server(tmp_path, **env) as one, demo_server(tmp_path, **env) as two:
        statuses, used = [], 0
        for i in range(11):  # the free tier's 10 requests a minute, spread over both replicas
            with (one if i % 2 == 0 else two).client() as http:
                r = http.post(
                    "/v1/chat/completions",
                    json=CHAT,
                    headers={"authorization": "Bearer gk-demo-free"},
                )
            statuses.append(r.status_code)
            if r.status_code == 200:
                used += r.json()["usage"]["total_tokens"]
        assert statuses == [200] * 10 + [429]
        keys = {k.decode() for k in redis.Redis.from_url(redis_url).keys(f"{prefix}:*")}
        # The per-minute token bucket refills its ~100 settled tokens in milliseconds: a full
        # bucket is no key at all (it expired), so it may already be gone.
        assert keys - {f"{prefix}:{{subject:demo-free}}:tokens"} == {
            f"{prefix}:{{subject:demo-free}}:requests",
            f"{prefix}:{{org:demo-org-free}}:tokens_month",
        }
        # Each request reserved about 2000 tokens; each was settled to its real usage.
        assert asyncio.run(month_used(redis_url, prefix, used)) == used
