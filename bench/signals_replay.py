"""What the shared signal stream costs: ``python -m bench.signals_replay [--requests N]``.

With Redis storage every gateway publishes its observations (two a request) to one stream,
trimmed to ``signals.replay_seconds`` (unset: the longest window, 24 hours by default), and a
gateway that starts replays all of it before its state is warm. This publishes ``--requests``
requests of ``bench.signals_scale``'s shape (links, prompt-family bands, behavioural features,
a model) from ``--subjects`` subjects over one simulated hour, one stream entry a half-second
flush of 700 requests (a worker at 1,400 requests/s), on a throw-away redis-server; then
prints the stream's size in Redis (``MEMORY USAGE``) per observation, and the wall and CPU
time a fresh gateway takes to replay it (``RedisSignalStore.read_available`` until nothing is
left), per observation. From those: what a day and an hour of history cost per request/s of
fleet traffic. No HTTP request is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid

from redis.asyncio import Redis

from bench._common import redis_server
from bench.signals_scale import POOL, UA, Clock, body, population, prompt_work
from gatekeeper.signals import RedisSignalStore, SignalStage, SignalState
from gatekeeper.signals.state import Observation

WINDOWS = {"10m": 600.0, "1h": 3600.0, "24h": 86400.0}
#: Requests in one stream entry: half a second's flush of a worker at 1,400 requests/s.
PER_FLUSH = 700


async def main(requests: int, subjects: int, url: str) -> None:
    rng = random.Random(7)
    clock = Clock()
    key = f"bench:signals-replay:{uuid.uuid4().hex}"
    store = RedisSignalStore(SignalState(WINDOWS, "1h"), url, key=key, clock=clock)
    stage = SignalStage(store, link_by=["payment", "org", "network+user_agent"], clock=clock)
    stage._next_maintenance = float("inf")
    people = population(rng, subjects)
    prepared = await prompt_work(stage, [body(rng) for _ in range(POOL)])
    links = [stage._links(subject, network, UA) for subject, network in people]
    start = clock.now
    for k in range(requests):
        at = clock.now = start + 3600 * k / requests
        i = rng.randrange(subjects)
        subject = people[i][0]
        template, bands, features = prepared[rng.randrange(POOL)]
        store.publish(
            Observation(at, subject.id, requests=1, reasoning_requests=1, template=template,
                        links=links[i], bands=bands, features=features,
                        age_days=subject.account_age_days, model="m")
        )  # fmt: skip
        store.publish(Observation(at, subject.id, tokens=120, reasoning_exposed=1))
        if (k + 1) % PER_FLUSH == 0:
            await store.flush()
    await store.flush()
    client = Redis.from_url(url)
    size = await client.memory_usage(key, samples=0) or 0
    entries = await client.xlen(key)
    await store.aclose()

    fresh = RedisSignalStore(SignalState(WINDOWS, "1h"), url, key=key, clock=clock)
    wall, cpu = time.perf_counter(), time.process_time()
    applied = 0
    while (got := await fresh.read_available()) > 0:
        applied += got
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await fresh.aclose()
    await client.delete(key)
    await client.aclose()

    observations = 2 * requests
    per_obs, per_byte = cpu / applied, size / observations
    print(f"Signal stream: {requests:,} requests of {subjects:,} subjects, {observations:,} "
          f"observations in {entries:,} entries")  # fmt: skip
    print(f"stream in Redis: {size / 2**20:.1f} MiB, {per_byte:.0f} bytes per observation")
    print(f"replay by a fresh gateway: {applied:,} observations in {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU: {per_obs * 1e6:.1f} µs per observation")  # fmt: skip
    print("per request/s of fleet traffic (two observations a request):")
    for name, seconds in (("24 hours", 86400), ("1 hour", 3600)):
        held = 2 * seconds
        print(f"  {name} of history: {held * per_byte / 2**20:.1f} MiB in Redis, "
              f"{held * per_obs:.2f} s of CPU to replay")  # fmt: skip
    print("Non-2xx answers: none (no HTTP request is sent)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.signals_replay")
    parser.add_argument("--requests", type=int, default=200_000, help="requests published")
    parser.add_argument("--subjects", type=int, default=20_000, help="subjects sending them")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    with redis_server() as redis_url:
        asyncio.run(main(args.requests, args.subjects, redis_url))
