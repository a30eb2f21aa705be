"""Scale: the same load against 1 and 2 uvicorn workers sharing one Redis: `python -m bench.scale`.

The hello-world model API of ``bench.stack`` behind gatekeeper with Redis quotas (``gk-redis``),
and the bare app for reference, each served by uvicorn with ``--workers 1`` and ``--workers 2``
(every worker its own process, its own gatekeeper and decision log, one Redis for all), all
started at once. wrk loads each in turn, round after round, saturated.

Printed, medians over rounds: requests/s, the ratio of 2 workers to 1, the CPU the workers
used (user + system, every worker and thread) and so **requests/s per core** (requests per
CPU-second of the workers: what a core buys, whatever else runs on the machine), Redis' CPU
and ``EVALSHA`` per request (one quota check per request, whichever worker took it, plus the
token settlement). On this 2-core machine, wrk and Redis share the cores with the workers, so
2 workers cannot double the throughput; requests/s per core says whether they would on cores
of their own.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench._common import Answers, exit_if_refused, median, redis_server, report_answers
from bench._load import (
    SERVERS,
    Wrk,
    command_deltas,
    contender_cli,
    load_average,
    process_cpu,
    redis_info,
    serve_options,
    server_description,
    servers,
)
from bench._stack import BODY, HEADERS, PATH

MODULE = "bench.scale"
CONTENDERS = ["bare-1", "bare-2", "gk-redis-1", "gk-redis-2"]


def _always_nodelay() -> None:
    """TCP_NODELAY on every accepted connection, as uvicorn with one worker has.

    With ``--workers``, uvicorn binds the listening socket itself with protocol number 0, and
    asyncio only sets TCP_NODELAY on sockets whose protocol is IPPROTO_TCP: a response written
    in two pieces (h11 writes the head, then the body) then waits for the client's delayed ACK,
    40 ms on Linux, and 2 workers serve 30 times fewer requests than one. Measured here; it
    hits any app served that way on the asyncio loop (``--server asyncio``), so the benchmark
    restores what one worker gets. uvloop (the default server) sets TCP_NODELAY itself.
    """
    import asyncio.base_events
    import socket

    def nodelay(sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    asyncio.base_events._set_nodelay = nodelay  # type: ignore[attr-defined]


def app_factory() -> Any:
    """One worker's app (uvicorn calls this in every worker process)."""
    from bench._stack import bench_settings, hello_app, protected_app

    _always_nodelay()

    if os.environ["BENCH_SCALE_KIND"] == "bare":
        return hello_app()
    # One decision log per worker: a hash chain has one writer.
    directory = Path(os.environ["BENCH_SCALE_DIR"]) / f"worker-{os.getpid()}"
    scale = int(os.environ["BENCH_SCALE_QUOTAS"])
    return protected_app(bench_settings(directory, os.environ["BENCH_SCALE_REDIS"], scale))


def serve(
    contender: str, port: int, redis_url: str, directory: Path, server: str, quota_scale: int
) -> None:
    import uvicorn

    kind, workers = contender.rsplit("-", 1)
    os.environ.update(
        BENCH_SCALE_KIND=kind,
        BENCH_SCALE_REDIS=redis_url,
        BENCH_SCALE_DIR=str(directory),
        BENCH_SCALE_QUOTAS=str(quota_scale),
    )
    uvicorn.run(
        "bench.scale:app_factory",
        factory=True,
        workers=int(workers),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        **SERVERS[server],  # type: ignore[arg-type]
    )


def family_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children (uvicorn's workers)."""
    total = process_cpu(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            total += process_cpu(int(entry.name))
    return total


def run(args: argparse.Namespace) -> tuple[dict[str, dict[str, list[float]]], dict[str, Answers]]:
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    answers = {name: Answers() for name in CONTENDERS}
    wrk = Wrk("POST", BODY, HEADERS)
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        print(f"bench.scale: {args.rounds} rounds of {args.seconds:g} s, {args.connections} "
              f"connections; {server_description(args.server)}; {load_average()}")  # fmt: skip
        children = stack.enter_context(
            servers(MODULE, CONTENDERS, *serve_options(redis_url, directory, args))
        )
        time.sleep(args.startup)  # the port is bound before every worker is accepting
        for child in children.values():
            if args.warmup > 0:
                wrk.run(child.url + PATH, connections=args.connections, seconds=args.warmup)
        for round_no in range(1, args.rounds + 1):
            order = CONTENDERS[round_no - 1 :] + CONTENDERS[: round_no - 1]
            for name in order:
                child = children[name]
                target = child.url + PATH
                before, redis_cpu = redis_info(redis_url)
                cpu = family_cpu(child.pid)
                load = wrk.run(target, connections=args.connections, seconds=args.seconds)
                cpu = family_cpu(child.pid) - cpu
                after, redis_after = redis_info(redis_url)
                calls = command_deltas(before, after, load.requests)
                entry = results[name]
                entry["rps"].append(load.rps)
                entry["per_core"].append(load.requests / cpu if cpu else 0.0)
                entry["cores"].append(cpu / load.seconds)
                entry["redis_us"].append((redis_after - redis_cpu) / max(1, load.requests) * 1e6)
                entry["evalsha"].append(calls.get("evalsha", 0.0))
                answers[name].add(load.answers)
                if not load.answers.valid:
                    print(f"  round {round_no} {name:<11}{load.answers.refusal()}")
                    continue
                print(f"  round {round_no} {name:<11}{load.rps:>8.0f} req/s  workers used "
                      f"{cpu / load.seconds:.2f} cores -> {entry['per_core'][-1]:,.0f} req/s per "
                      f"core; EVALSHA/request {entry['evalsha'][-1]:.2f}; "
                      f"{load.answers.describe()}")  # fmt: skip
    wrk.close()
    return results, answers


def report(results: dict[str, dict[str, list[float]]], answers: dict[str, Answers]) -> list[str]:
    """Print the table; returns the contenders whose figures were refused."""
    refused = report_answers(answers, "every measured run")
    med = {
        name: {k: median(v) for k, v in entry.items()}
        for name, entry in results.items()
        if name not in refused
    }
    print("\nScale, medians over rounds (saturated)")
    print(f"{'contender':<12}{'req/s':>8}{'vs 1 worker':>12}{'cores used':>11}"
          f"{'req/s per core':>15}{'redis µs/req':>13}{'EVALSHA/req':>12}")  # fmt: skip
    for name in CONTENDERS:
        if name in refused:
            print(f"{name:<12}{answers[name].refusal()}")
            continue
        m = med[name]
        one = med.get(name.rsplit("-", 1)[0] + "-1", {"rps": float("nan")})
        print(f"{name:<12}{m['rps']:>8.0f}{m['rps'] / one['rps']:>12.2f}{m['cores']:>11.2f}"
              f"{m['per_core']:>15,.0f}{m['redis_us']:>13.0f}{m['evalsha']:>12.2f}")  # fmt: skip
    if {"gk-redis-2", "bare-2"} & set(refused):
        print(f"\ngk-redis, 2 workers: not reported (refused); {load_average()}")
        return refused
    gk, bare = med["gk-redis-2"], med["bare-2"]
    print(
        f"\ngk-redis, 2 workers: {gk['per_core']:,.0f} req/s per core = "
        f"{gk['per_core'] / bare['per_core']:.2f} x the bare app's per core; {load_average()}"
    )
    return refused


def main(argv: list[str] | None = None) -> None:
    parser = contender_cli("python -m bench.scale", __doc__, CONTENDERS, seconds=5)
    parser.add_argument("--startup", type=float, default=3, help="seconds for workers to start")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.contender, args.port, args.redis, args.dir, args.server, args.quota_scale)
        return
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.startup = 1, 1, 0, 2
    exit_if_refused("bench.scale", report(*run(args)))


if __name__ == "__main__":
    main()
