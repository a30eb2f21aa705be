"""The hot-path budget: signals add no Redis round trip per request (real redis-server).

Counted with Redis' own INFO commandstats around 40 requests through an in-process gateway
whose quotas and signals both live in Redis.
"""

from __future__ import annotations

import json
from pathlib import Path

from redis.asyncio import Redis

from tests.servers import demo_stack

REQUESTS = 40


async def command_counts(client: Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_signals_cost_no_round_trip_per_request(redis_url: str, tmp_path: Path) -> None:
    subjects = tmp_path / "subjects.json"
    subjects.write_text(
        json.dumps(
            {"subjects": [{"key": "k1", "id": "s1", "tier": "pro", "kyc_level": "government_id"}]}
        )
    )
    gk, http = demo_stack(
        subjects,
        tmp_path / "d.jsonl",
        quota={"storage": redis_url, "key_prefix": f"rt{tmp_path.name[-8:]}"},
        signals={"key_prefix": f"rt{tmp_path.name[-8:]}", "flush_seconds": 3600},
    )
    observer = Redis.from_url(redis_url)
    body = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "hello"}]}
    try:
        async with http as client:
            warm = await client.post("/v1/chat/completions", json=body, headers={"x-api-key": "k1"})
            assert warm.status_code == 200
            before = await command_counts(observer)
            for _ in range(REQUESTS):
                response = await client.post(
                    "/v1/chat/completions", json=body, headers={"x-api-key": "k1"}
                )
                assert response.status_code == 200
            after = await command_counts(observer)
        assert gk.signals is not None
        await gk.signals.store.sync()  # what the background flush would publish: one XADD
        flushed = await command_counts(observer)
    finally:
        await gk.aclose()
        await observer.aclose()
    calls = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    calls = {name: n for name, n in calls.items() if n and name not in {"info"}}
    # Signals: nothing per request (reads are in-process; the stream reader blocks in the
    # background, at most one XREAD a second).
    assert calls.get("xadd", 0) == 0
    assert calls.get("xread", 0) <= 5
    # Quotas: one script per request before the app, and one settling the tokens after the
    # response (commands run inside the scripts are counted by Redis too, but cost no trip).
    assert calls.get("evalsha", 0) <= 2 * REQUESTS
    assert flushed.get("xadd", 0) - after.get("xadd", 0) == 1
