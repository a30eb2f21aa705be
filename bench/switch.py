"""The interpreter's thread switch interval, side by side: `python -m bench.switch`.

gatekeeper's decision log seals batches on a writer thread, under the interpreter lock; a
request that arrives meanwhile waits until the writer is made to let go, after the switch
interval (``sys.setswitchinterval``; Python's is 5 ms). gatekeeper sets it at lifespan start-up
(``runtime.switch_interval``, 0.5 ms by default). This serves ``bench.stack``'s gk-redis
contender (``--stack memory``: gk-memory) once per interval in ``--intervals``, all started at
once, and measures them in turn, round after round, as ``bench.stack`` does: saturated
(requests/s, CPU per request) and with one connection (p50, p99). Printed: medians over rounds,
and each interval's figures as a ratio to Python's 5 ms.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from bench._common import median, redis_server
from bench._load import Wrk, contender_cli, load_average, serve_options, server_description, servers
from bench._stack import BODY, HEADERS, PATH

MODULE = "bench.switch"
PYTHONS_OWN = "0.005"


def names(intervals: list[str]) -> list[str]:
    return [f"switch-{interval}" for interval in intervals]


def serve(contender: str, port: int, redis_url: str, directory: Path, server: str) -> None:
    from bench.stack import serve as serve_stack

    interval = contender.removeprefix("switch-")
    os.environ["GATEKEEPER_RUNTIME__SWITCH_INTERVAL"] = interval
    stack = os.environ.get("BENCH_SWITCH_STACK", "redis")
    serve_stack(f"gk-{stack}", port, redis_url, directory / contender, server)


def run(args: argparse.Namespace, contenders: list[str]) -> dict[str, dict[str, list[float]]]:
    from bench.stack import _measure

    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    wrk = Wrk("POST", BODY, HEADERS)
    os.environ["BENCH_SWITCH_STACK"] = args.stack
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-switch-")))
        children = stack.enter_context(
            servers(MODULE, contenders, *serve_options(redis_url, directory, args))
        )
        print(f"bench.switch: gk-{args.stack} at switch intervals {', '.join(args.intervals)} s; "
              f"{args.rounds} rounds of {args.seconds:g} s saturated ({args.connections} "
              f"connections) + {args.seconds:g} s one connection; "
              f"{server_description(args.server)}; {load_average()}")  # fmt: skip
        for child in children.values():
            if args.warmup > 0:
                wrk.run(child.url + PATH, connections=args.connections, seconds=args.warmup)
        for round_no in range(1, args.rounds + 1):
            order = contenders[round_no - 1 :] + contenders[: round_no - 1]
            for name in order:
                busy, quiet, app_us, _, _ = _measure(
                    wrk, children[name], redis_url, args.seconds, args.connections
                )
                if busy.errors or quiet.errors:
                    print(f"  ! {name}: {busy.errors + quiet.errors} failed requests")
                for key, value in (("rps", busy.rps), ("p50", quiet.p50), ("p99", quiet.p99),
                                   ("app_us", app_us)):  # fmt: skip
                    results[name][key].append(value)
                print(f"  round {round_no} {name:<15}{busy.rps:>8.0f} req/s  1 conn p50 "
                      f"{quiet.p50:.3f} p99 {quiet.p99:.3f} ms  CPU {app_us:.0f} µs")  # fmt: skip
    wrk.close()
    return results


def report(results: dict[str, dict[str, list[float]]], contenders: list[str]) -> None:
    med = {name: {k: median(v) for k, v in results[name].items()} for name in contenders}
    base = med.get(f"switch-{PYTHONS_OWN}")
    print("\nSwitch interval, medians over rounds (req/s saturated; latency with one connection)")
    print(f"{'interval s':<12}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs':>8}"
          + (f"{'req/s vs 5 ms':>15}{'p99 vs 5 ms':>13}" if base else ""))  # fmt: skip
    for name in contenders:
        m = med[name]
        line = (f"{name.removeprefix('switch-'):<12}{m['rps']:>8.0f}{m['p50']:>9.3f}"
                f"{m['p99']:>9.3f}{m['app_us']:>8.0f}")  # fmt: skip
        if base:
            line += f"{m['rps'] / base['rps']:>15.2f}{m['p99'] / base['p99']:>13.2f}"
        print(line)
    print(load_average())


def main(argv: list[str] | None = None) -> None:
    parser = contender_cli("python -m bench.switch", __doc__, None, seconds=4)
    parser.add_argument(
        "--intervals",
        type=lambda text: [v for v in text.split(",") if v],
        default=[PYTHONS_OWN, "0.001", "0.0005"],
        help="switch intervals, s, comma-separated (0.005,0.001,0.0005)",
    )
    parser.add_argument("--stack", choices=["redis", "memory"], default="redis")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.contender, args.port, args.redis, args.dir, args.server)
        return
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 1, 0
    contenders = names(args.intervals)
    report(run(args, contenders), contenders)


if __name__ == "__main__":
    main()
