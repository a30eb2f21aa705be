"""The whole stack, side by side in one run: `python -m bench.stack`.

One hello-world model API (``bench/_stack.py``: Starlette, ``POST /v1/chat/completions``
answering a short chat completion), served four ways by uvicorn (one worker each, its own
process), all started at once and measured in turn, round after round:

- ``bare``        the app alone;
- ``gk-memory``   behind gatekeeper: embedded engine and the default pack, in-memory quotas and
                  signals, the chained, signed JSONL decision log, metrics (the defaults);
- ``gk-redis``    the same with quotas (and so signals and continuity) on one local Redis;
- ``slowapi``     behind slowapi instead: ``limits`` on the same Redis, one fixed-window limit
                  keyed by the API key (what a team might use instead; it does far less);
- ``floor``       behind the least a policy-enforcing limiter does: one Redis script call
                  (redis-py) and one verdict of the default pack (embedded engine, a fixed
                  input), nothing else. The targets' floor: how close to the bare app any
                  gatekeeper in Python could get on this server.

Load: wrk (one thread, its own process, a Lua script for the request and its per-request
latency percentiles) on loopback. Each contender is measured saturated (``--connections``, for
requests/s and CPU per request) and with one connection (latency: p50/p99 minus the bare
app's = added latency). Printed: medians over rounds and ratios, the CPU each request costs the
server (user + system of its process, every thread included: a figure other load on a shared
machine barely moves), and Redis' commands per request (``INFO commandstats`` deltas, then one
short ``MONITOR`` window that names each script, to tell the quota check on the request path
from the token settlement sent after the response).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench._common import Answers, Child, exit_if_refused, median, redis_server, report_answers
from bench._load import (
    SERVERS,
    Load,
    Wrk,
    command_deltas,
    contender_cli,
    load_average,
    monitor_scripts,
    process_cpu,
    redis_info,
    serve_options,
    server_description,
    servers,
)
from bench._stack import BODY, HEADERS, PATH

MODULE = "bench.stack"
CONTENDERS = ["bare", "gk-memory", "gk-redis", "slowapi", "floor"]
TARGETS = {"p50": 0.3, "p99": 1.5, "vs_bare": 0.6, "vs_slowapi": 1.5}


def build_app(
    contender: str,
    redis_url: str,
    directory: Path,
    quota_scale: int,
    linger: float | None = None,
) -> Any:
    from bench._stack import bench_settings, floor_app, hello_app, protected_app, slowapi_app

    if contender == "bare":
        return hello_app()
    if contender == "slowapi":
        return slowapi_app(redis_url, quota_scale)
    if contender == "floor":
        return floor_app(redis_url, directory / contender, quota_scale)
    storage = redis_url if contender == "gk-redis" else "memory://"
    audit = {"linger_seconds": linger} if linger is not None else None
    return protected_app(bench_settings(directory / contender, storage, quota_scale, audit))


def serve(
    contender: str,
    port: int,
    redis_url: str,
    directory: Path,
    server: str,
    quota_scale: int,
    linger: float | None = None,
) -> None:
    import uvicorn

    app = build_app(contender, redis_url, directory, quota_scale, linger)
    # gatekeeper, not uvicorn, decides which X-Forwarded-For to believe (as documented).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        **SERVERS[server],  # type: ignore[arg-type]
    )


def linger_description(args: argparse.Namespace) -> str:
    """The run's header names a decision-log linger other than the setting's default."""
    linger = getattr(args, "linger", None)
    return "" if linger is None else f"audit.linger_seconds {linger:g}; "


def _measure(
    wrk: Wrk, child: Child, redis_url: str, seconds: float, connections: int
) -> tuple[Load, Load, float, float, dict[str, float]]:
    target = child.url + PATH
    before, redis_cpu = redis_info(redis_url)
    app_cpu = process_cpu(child.pid)
    busy = wrk.run(target, connections=connections, seconds=seconds)
    app_cpu = process_cpu(child.pid) - app_cpu
    after, redis_after = redis_info(redis_url)
    quiet = wrk.run(target, connections=1, seconds=seconds)
    commands = command_deltas(before, after, busy.requests)
    per = 1e6 / max(1, busy.requests)
    return busy, quiet, app_cpu * per, (redis_after - redis_cpu) * per, commands


def run(
    args: argparse.Namespace, module: str = MODULE, contenders: list[str] = CONTENDERS
) -> dict[str, Any]:
    """Serve ``contenders`` (each ``python -m <module> serve NAME``) and measure them in turn,
    round after round; ``bench.switch`` runs its own contenders through here too."""
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    commands: dict[str, list[dict[str, float]]] = defaultdict(list)
    answers = {name: Answers() for name in contenders}
    wrk = Wrk("POST", BODY, HEADERS)
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-stack-")))
        children = stack.enter_context(
            servers(module, contenders, *serve_options(redis_url, directory, args))
        )
        print(f"{module}: {len(contenders)} contenders, {args.rounds} rounds of "
              f"{args.seconds:g} s saturated ({args.connections} connections) + {args.seconds:g} s "
              f"one connection; {server_description(args.server)}; redis {redis_url}; "
              f"{linger_description(args)}{load_average()}")  # fmt: skip
        for child in children.values():  # warm: imports, first-call costs, connections
            if args.warmup > 0:
                wrk.run(child.url + PATH, connections=args.connections, seconds=args.warmup)
        for round_no in range(1, args.rounds + 1):
            # Rotate who goes first: a machine whose load drifts slows each one in turn.
            order = contenders[round_no - 1 :] + contenders[: round_no - 1]
            for name in order:
                busy, quiet, app_us, redis_us, calls = _measure(
                    wrk, children[name], redis_url, args.seconds, args.connections
                )
                ran = Answers()
                ran.add(busy.answers)
                ran.add(quiet.answers)
                answers[name].add(ran)
                entry = results[name]
                for key, value in (
                    ("rps", busy.rps), ("p50", quiet.p50), ("p99", quiet.p99),
                    ("busy_p50", busy.p50), ("busy_p99", busy.p99),
                    ("app_us", app_us), ("redis_us", redis_us),
                ):  # fmt: skip
                    entry[key].append(value)
                commands[name].append(calls)
                if not ran.valid:
                    print(f"  round {round_no} {name:<17}{ran.refusal()}")
                    continue
                print(f"  round {round_no} {name:<17}{busy.rps:>8.0f} req/s  "
                      f"1 conn p50 {quiet.p50:.3f} p99 {quiet.p99:.3f} ms   "
                      f"CPU/request {app_us:.0f} µs (redis {redis_us:.0f})   "
                      f"{ran.describe()}")  # fmt: skip
        scripts = None
        if args.monitor > 0:
            gk = children["gk-redis"]
            scripts = monitor_scripts(
                redis_url,
                args.monitor,
                lambda: wrk.run(gk.url + PATH, connections=4, seconds=args.monitor),
            )
        end_load = load_average()
    wrk.close()
    return {
        "results": results,
        "commands": commands,
        "scripts": scripts,
        "load": end_load,
        "answers": answers,
    }


def report(measured: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Print the tables; returns the figures the summary compares with the targets, and the
    contenders whose figures were refused (answers other than 2xx)."""
    results, answers = measured["results"], measured["answers"]
    refused = report_answers(answers, "every measured run, saturated and one connection")
    med = {
        name: {k: median(v) for k, v in entry.items()}
        for name, entry in results.items()
        if name not in refused
    }
    nan = float("nan")
    none = {"rps": nan, "p50": nan, "p99": nan, "app_us": nan}
    bare, slow = med.get("bare", none), med.get("slowapi", none)
    print("\nWhole stack, medians over rounds (req/s saturated; latency with one connection,")
    print("ms; CPU per request of the server process and of Redis, µs, over the saturated run)")
    print(f"{'contender':<11}{'req/s':>8}{'vs bare':>9}{'vs slowapi':>11}{'p50':>8}{'+p50':>8}"
          f"{'p99':>8}{'+p99':>8}{'CPU µs':>8}{'+CPU':>7}{'redis':>7}")  # fmt: skip
    for name in CONTENDERS:
        if name in refused:
            print(f"{name:<11}{answers[name].refusal()}")
            continue
        m = med[name]
        print(
            f"{name:<11}{m['rps']:>8.0f}{m['rps'] / bare['rps']:>9.2f}"
            f"{m['rps'] / slow['rps']:>11.2f}{m['p50']:>8.3f}{m['p50'] - bare['p50']:>+8.3f}"
            f"{m['p99']:>8.3f}{m['p99'] - bare['p99']:>+8.3f}{m['app_us']:>8.0f}"
            f"{m['app_us'] - bare['app_us']:>+7.0f}{m['redis_us']:>7.0f}"
        )
    if refused:
        print("(nan: a ratio or a difference to a contender whose figures were refused)")
    print("\nUnder saturation (wrk's own latency at full load, ms): "
          + ", ".join(f"{n} p50 {med[n]['busy_p50']:.2f} p99 {med[n]['busy_p99']:.2f}"
                      for n in CONTENDERS if n in med))  # fmt: skip
    print("\nRedis commands per request (INFO commandstats deltas over the saturated runs, median)")
    for name in CONTENDERS:
        rounds = measured["commands"][name]
        names = sorted({k for r in rounds for k in r})
        shown = ", ".join(f"{k} {median([r.get(k, 0.0) for r in rounds]):.3f}" for k in names)
        print(f"  {name:<10} {shown or 'none'}")
    scripts = measured["scripts"]
    if scripts:
        from gatekeeper.quota.redis_store import ACQUIRE, ADJUST

        labels = {ACQUIRE.sha[:12]: "quota check (acquire)", ADJUST.sha[:12]: "settlement (adjust)"}
        print("\nMONITOR window on gk-redis (4 connections): commands by kind")
        for command, count in scripts.most_common():
            sha = command.split(" ")[1] if " " in command else ""
            print(f"  {count:>7}  {command:<22} {labels.get(sha, '')}")
    gk, floor = med.get("gk-redis", none), med.get("floor", none)
    figures = {
        "added_p50_ms": gk["p50"] - bare["p50"],
        "added_p99_ms": gk["p99"] - bare["p99"],
        "vs_bare": gk["rps"] / bare["rps"],
        "vs_slowapi": gk["rps"] / slow["rps"],
        "cpu_added_us": gk["app_us"] - bare["app_us"],
        "floor_vs_bare": floor["rps"] / bare["rps"],
    }
    if {"bare", "gk-redis", "floor"} & set(refused):
        print("\nThe floor: not reported (bare, gk-redis or floor refused)")
    else:
        print(
            f"\nThe floor (one Redis script call + one policy verdict, nothing else): "
            f"{figures['floor_vs_bare']:.2f} x bare, added p50 "
            f"{floor['p50'] - bare['p50']:.3f} ms, +{floor['app_us'] - bare['app_us']:.0f} µs "
            f"CPU per request; gk-redis is {gk['rps'] / floor['rps']:.2f} x its requests/s, "
            f"+{gk['app_us'] - floor['app_us']:.0f} µs CPU above it"
        )
    if {"bare", "gk-redis", "slowapi"} & set(refused):
        print(f"\nTargets: not reported (bare, gk-redis or slowapi refused); {measured['load']}")
    else:
        print(
            f"\nTargets (gk-redis): added p50 {figures['added_p50_ms']:.3f} ms (target <= 0.3), "
            f"added p99 {figures['added_p99_ms']:.3f} ms (<= 1.5), req/s {figures['vs_bare']:.2f}"
            f" x bare (>= 0.6), {figures['vs_slowapi']:.2f} x slowapi (>= 1.5); {measured['load']}"
        )
    return figures, refused


def main(argv: list[str] | None = None) -> None:
    parser = contender_cli("python -m bench.stack", __doc__, CONTENDERS, seconds=4, linger=True)
    parser.add_argument("--monitor", type=float, default=1, help="MONITOR window, s (0: none)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(
            args.contender,
            args.port,
            args.redis,
            args.dir,
            args.server,
            args.quota_scale,
            args.linger,
        )
        return
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.monitor = 1, 1, 0, 1
    _, refused = report(run(args))
    exit_if_refused("bench.stack", refused)


if __name__ == "__main__":
    main()
