"""Quota enforcement, side by side on one app and one Redis: `python -m bench.quotas`.

HTTP (uvicorn, one worker; wrk in its own process as the load generator, on loopback):

- ``none``            the app alone;
- ``gk-memory``       gatekeeper's quota stage (3 quotas, memory store);
- ``gk-redis-1``      the quota stage, Redis store, 1 token bucket;
- ``gk-redis-3``      the quota stage, Redis store, 3 quotas of two owners (2 buckets + a
                      monthly window): one script, one round trip;
- ``gk-settle-now``   ``gk-redis-3`` plus the token settlement after the response
                      (``TokenReservation``, the middleware's code), ``quota.settle_interval``
                      0: each settlement its own script call, as before deferred settlement;
- ``gk-settle``       the same with the default ``quota.settle_interval`` (settlements merged
                      and sent together);
- ``slowapi-fixed``   slowapi with `limits` on the same Redis, fixed window (1 limit);
- ``slowapi-moving``  slowapi, moving window (1 limit).

Each contender is measured saturated (``--connections``, for requests/s) and with one
connection (for latency: p50/p99 minus the bare app's, "added latency"). Rounds are interleaved
and the medians printed, with every status each contender answered (wrk counts them): a
contender whose runs answered anything but 2xx gets no figure, and the script exits with
status 1. Then each contender's Redis commands per request (``INFO
commandstats`` deltas), and the cost of one check without HTTP: the multi-quota script against
`limits`' fixed, moving and sliding windows on the same Redis, and a check plus its settlement,
immediate and deferred (each check's verdict counted: a refused check is not a check's cost).

The quota stage here is gatekeeper's real store call and headers (``acquire`` +
``rate_limit_headers``) without identity or policy, so the figures isolate quota enforcement.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from typing import Any

from bench._common import (
    Answers,
    child_server,
    exit_if_refused,
    median,
    redis_server,
    report_answers,
)
from bench._load import Wrk, redis_info, redis_info_async

MODULE = "bench.quotas"
CONTENDERS = [
    "none",
    "gk-memory",
    "gk-redis-1",
    "gk-redis-3",
    "gk-settle-now",
    "gk-settle",
    "slowapi-fixed",
    "slowapi-moving",
]
HUGE = 10**9  # limits nothing is refused by: the benchmark measures checks, not refusals
KEY_HEADER = {"x-api-key": "bench-subject"}


# --- the served apps (child processes) ---------------------------------------------------------


def _specs(count: int) -> list[Any]:
    from gatekeeper.contract import QuotaSpec

    every = [
        QuotaSpec(name="requests", key="subject:bench:requests", capacity=HUGE, rate=HUGE,
                  period=60),
        QuotaSpec(name="tokens", key="org:bench:tokens", unit="tokens", capacity=HUGE,
                  rate=HUGE, period=60, cost=500),
        QuotaSpec(name="tokens_month", key="org:bench:tokens_month", unit="tokens",
                  kind="window", window="month", capacity=HUGE, cost=500),
    ]  # fmt: skip
    return every[:count]


def build_app(contender: str, redis_url: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hit(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    if contender.startswith("slowapi"):
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded

        limiter = Limiter(
            key_func=lambda request: request.headers.get("x-api-key", "anonymous"),
            storage_uri=redis_url,
            strategy="moving-window" if contender == "slowapi-moving" else "fixed-window",
            key_prefix=contender,  # a fixed window's string and a moving window's list differ
        )
        limited = limiter.limit(f"{HUGE}/minute")(hit)
        app = Starlette(routes=[Route("/hit", limited)])
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        return app
    app = Starlette(routes=[Route("/hit", hit)])
    if contender == "none":
        return app
    from gatekeeper.quota import MemoryQuotaStore, open_quota_store

    if contender == "gk-memory":
        return QuotaStage(app, MemoryQuotaStore(), _specs(3))
    settles = contender.startswith("gk-settle")
    store = open_quota_store(
        redis_url, prefix="bench", timeout=0.5, settle_interval=_settle_interval(contender)
    )
    return QuotaStage(app, store, _specs(1 if contender == "gk-redis-1" else 3), settle=settles)


def _settle_interval(contender: str) -> float:
    from gatekeeper.settings import QuotaSettings

    return QuotaSettings().settle_interval if contender == "gk-settle" else 0.0


class QuotaStage:
    """gatekeeper's quota stage alone: acquire, 429 on refusal, RateLimit headers, and with
    ``settle`` the token settlement after the response (estimate reserved, bytes sent charged).
    """

    def __init__(self, app: Any, store: Any, specs: list[Any], *, settle: bool = False) -> None:
        self.app, self.store, self.specs, self.settle = app, store, specs, settle

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from gatekeeper.quota import TokenReservation, rate_limit_headers

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        result = await self.store.acquire(self.specs)
        headers = rate_limit_headers(result)
        if not result.allowed:
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        reservation = None
        if self.settle:
            reservation = TokenReservation.open(self.store, self.specs, result, prompt_chars=400)
        if reservation is None:
            await self.app(scope, receive, with_headers)
            return
        await self.app(scope, receive, reservation.meter(with_headers))
        await reservation.settle(None)


def serve(contender: str, port: int, redis_url: str) -> None:
    import uvicorn

    app = build_app(contender, redis_url)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the measurements (parent process) ---------------------------------------------------------


def http_rounds(redis_url: str, rounds: int, seconds: float, connections: int) -> dict[str, Any]:
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    commands: dict[str, dict[str, float]] = {}
    answers = {name: Answers() for name in CONTENDERS}
    wrk = Wrk("GET", b"", KEY_HEADER)
    for round_no in range(1, rounds + 1):
        for contender in CONTENDERS:
            with child_server(MODULE, contender, "--redis", redis_url) as child:
                target = child.url + "/hit"
                wrk.run(target, connections=connections, seconds=1)  # warm
                before, redis_cpu = redis_info(redis_url)
                app_cpu = child.cpu_seconds()
                load = wrk.run(target, connections=connections, seconds=seconds)
                app_cpu = child.cpu_seconds() - app_cpu
                after, redis_cpu_after = redis_info(redis_url)
                quiet = wrk.run(target, connections=1, seconds=seconds)
            ran = Answers()
            ran.add(load.answers)
            ran.add(quiet.answers)
            answers[contender].add(ran)
            per_request = {
                name: (after.get(name, 0) - before.get(name, 0)) / max(1, load.requests)
                for name in after
                if name not in ("info",) and after.get(name, 0) != before.get(name, 0)
            }
            commands[contender] = per_request
            entry = results[contender]
            entry["rps"].append(load.rps)
            entry["p50"].append(quiet.p50)
            entry["p99"].append(quiet.p99)
            entry["app_us"].append(app_cpu / max(1, load.requests) * 1e6)
            entry["redis_us"].append((redis_cpu_after - redis_cpu) / max(1, load.requests) * 1e6)
            if not ran.valid:
                print(f"  round {round_no} {contender:<15} {ran.refusal()}")
                continue
            print(
                f"  round {round_no} {contender:<15} {load.rps:>9.0f} req/s   "
                f"1 conn p50 {quiet.p50:.3f} ms  p99 {quiet.p99:.3f} ms   "
                f"CPU/request app {entry['app_us'][-1]:.0f} µs, "
                f"redis {entry['redis_us'][-1]:.0f} µs   {ran.describe()}"
            )
    wrk.close()
    return {"results": results, "commands": commands, "answers": answers}


async def check_costs(
    redis_url: str, rounds: int, checks: int
) -> tuple[dict[str, list[tuple[float, float, float]]], dict[str, int]]:
    """Microseconds per check, sequential, one asyncio client, no HTTP; and each case's
    refused checks (none expected: a refused check would be timed as a check)."""
    from limits import parse
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import (
        FixedWindowRateLimiter,
        MovingWindowRateLimiter,
        SlidingWindowCounterRateLimiter,
    )

    from gatekeeper.quota import open_quota_store

    store = open_quota_store(redis_url, prefix="bench-check", timeout=0.5)
    stores = {
        name: open_quota_store(
            redis_url, prefix="bench-check", timeout=0.5, settle_interval=_settle_interval(name)
        )
        for name in ("gk-settle-now", "gk-settle")
    }
    storage = RedisStorage(f"async+{redis_url}", implementation="redispy")
    fixed = FixedWindowRateLimiter(storage)
    moving = MovingWindowRateLimiter(storage)
    sliding = SlidingWindowCounterRateLimiter(storage)
    per_minute = parse(f"{HUGE}/minute")
    one, three = _specs(1), _specs(3)

    async def gk(specs: list[Any]) -> bool:
        return bool((await store.acquire(specs)).allowed)

    async def settled(name: str) -> bool:
        # A request's quota work: the check, then its two token quotas settled (-100 each).
        from gatekeeper.quota import QuotaAdjustment

        result = await stores[name].acquire(three)
        await stores[name].adjust(
            [
                QuotaAdjustment(s, -100, st.window_start)
                for s, st in zip(three[1:], result.states[1:], strict=True)
            ]
        )
        return bool(result.allowed)

    async def lim(strategy: Any, limits: int) -> bool:
        # Each strategy keeps its own kind of key: name them apart.
        allowed = True
        for i in range(limits):
            allowed &= bool(await strategy.hit(per_minute, type(strategy).__name__, str(i)))
        return allowed

    cases = {
        "gatekeeper script, 1 bucket": lambda: gk(one),
        "gatekeeper script, 3 quotas": lambda: gk(three),
        "3 quotas + settlement, immediate": lambda: settled("gk-settle-now"),
        "3 quotas + settlement, deferred": lambda: settled("gk-settle"),
        "limits fixed window, 1 limit": lambda: lim(fixed, 1),
        "limits moving window, 1 limit": lambda: lim(moving, 1),
        "limits sliding window counter, 1 limit": lambda: lim(sliding, 1),
        "limits moving window, 3 limits": lambda: lim(moving, 3),
    }
    costs: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    refused = dict.fromkeys(cases, 0)
    for _ in range(rounds):
        for name, make in cases.items():
            for _ in range(50):
                await make()
            _, redis_before = await redis_info_async(redis_url)
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(checks):
                if not await make():
                    refused[name] += 1
            for deferred in stores.values():  # what is still pending is part of the cost
                await deferred.store.flush()  # type: ignore[attr-defined]
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu
            _, redis_after = await redis_info_async(redis_url)
            per = 1e6 / checks
            costs[name].append((wall * per, cpu * per, (redis_after - redis_before) * per))
    await store.aclose()
    for deferred in stores.values():
        await deferred.aclose()
    return costs, refused


def report(
    http: dict[str, Any],
    costs: dict[str, list[tuple[float, float, float]]],
    refused_checks: dict[str, int],
) -> list[str]:
    """Print the tables; returns what was refused (contenders, check cases)."""
    results, answers = http["results"], http["answers"]
    refused = report_answers(answers, "every measured run, saturated and one connection")
    nan = float("nan")
    base = results["none"] if "none" not in refused else {}
    base_rps, base_p50, base_p99, base_cpu = (
        median(base[k]) if base else nan for k in ("rps", "p50", "p99", "app_us")
    )
    print("\nHTTP, medians over rounds (requests/s saturated; latency with one connection;")
    print("CPU per request of the app process and of Redis, over the saturated run)")
    print(f"{'contender':<16}{'req/s':>8}{'vs none':>9}{'p50 ms':>8}{'+p50':>8}{'p99 ms':>8}"
          f"{'+p99':>8}{'app µs':>8}{'+app':>7}{'redis µs':>9}")  # fmt: skip
    for contender in CONTENDERS:
        if contender in refused:
            print(f"{contender:<16}{answers[contender].refusal()}")
            continue
        entry = results[contender]
        rps, p50, p99 = (median(entry[k]) for k in ("rps", "p50", "p99"))
        app, redis_us = median(entry["app_us"]), median(entry["redis_us"])
        print(
            f"{contender:<16}{rps:>8.0f}{rps / base_rps:>9.2f}{p50:>8.3f}{p50 - base_p50:>+8.3f}"
            f"{p99:>8.2f}{p99 - base_p99:>+8.2f}{app:>8.0f}{app - base_cpu:>+7.0f}{redis_us:>9.0f}"
        )
    print(
        "\nRedis commands per request (INFO commandstats deltas over the saturated run; "
        "round trips = commands from the client)"
    )
    for contender in CONTENDERS:
        calls = http["commands"].get(contender) or {}
        # Both gatekeeper and limits do all their work in Lua: the client sends EVALSHA (EVAL
        # once per server); every other command counted ran inside a script.
        client = sum(v for k, v in calls.items() if k in ("evalsha", "eval"))
        shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(calls.items()))
        print(f"{contender:<16} from the client {client:.2f}   ({shown or 'none'})")
    checks = "; ".join(f"{name} {n:,}" for name, n in refused_checks.items())
    print(f"\nRefused checks without HTTP (every timed check; none expected): {checks}")
    refused += [name for name, n in refused_checks.items() if n]
    print("\nOne check without HTTP (µs, medians over rounds; sequential, asyncio, redis-py):")
    print("wall time, the client's CPU, Redis' CPU")
    three = "gatekeeper script, 3 quotas"
    script = median([c[0] for c in costs[three]]) if three not in refused else nan
    print(f"{'':<40}{'wall':>8}{'vs 3q':>7}{'client':>8}{'redis':>7}")
    for name, values in costs.items():
        if name in refused:
            print(f"{name:<40}REFUSED, {refused_checks[name]:,} checks refused")
            continue
        wall, cpu, redis_cpu = (median([v[i] for v in values]) for i in range(3))
        print(f"{name:<40}{wall:>8.1f}{wall / script:>7.2f}{cpu:>8.1f}{redis_cpu:>7.1f}")
    return refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="(internal) serve one contender")
    serve_cmd.add_argument("contender", choices=CONTENDERS)
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--redis", required=True)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--seconds", type=float, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--checks", type=int, default=2000, help="checks per micro-benchmark")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.contender, args.port, args.redis)
        return
    with redis_server() as redis_url:
        print(
            f"bench.quotas: {len(CONTENDERS)} contenders, {args.rounds} rounds, redis {redis_url}"
        )
        http = http_rounds(redis_url, args.rounds, args.seconds, args.connections)
        costs, refused_checks = asyncio.run(check_costs(redis_url, args.rounds, args.checks))
    exit_if_refused("bench.quotas", report(http, costs, refused_checks))


if __name__ == "__main__":
    main()
