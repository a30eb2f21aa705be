"""The interpreter's thread switch interval, side by side: `python -m bench.switch`.

gatekeeper's decision log seals batches on a writer thread, under the interpreter lock; a
request that arrives meanwhile waits until the writer is made to let go, after the switch
interval (``sys.setswitchinterval``; Python's is 5 ms). gatekeeper sets it at lifespan start-up
(``runtime.switch_interval``, 0.5 ms by default). This serves ``bench.stack``'s gk-redis
contender (``--stack memory``: gk-memory) once per interval in ``--intervals``, all started at
once, and measures them in turn, round after round, with ``bench.stack``'s own run: saturated
(requests/s, CPU per request) and with one connection (p50, p99). Printed: medians over rounds,
and each interval's figures as a ratio to Python's 5 ms.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench._common import Answers, exit_if_refused, median, report_answers
from bench._load import contender_cli, load_average
from bench.stack import run
from bench.stack import serve as serve_stack

MODULE = "bench.switch"
PYTHONS_OWN = "0.005"


def names(stack: str, intervals: list[str]) -> list[str]:
    """One contender per interval: ``gk-<stack>@<interval>``."""
    return [f"gk-{stack}@{interval}" for interval in intervals]


def serve(
    contender: str, port: int, redis_url: str, directory: Path, server: str, quota_scale: int
) -> None:
    stack, interval = contender.split("@")
    os.environ["GATEKEEPER_RUNTIME__SWITCH_INTERVAL"] = interval
    serve_stack(stack, port, redis_url, directory / contender, server, quota_scale)


def report(
    results: dict[str, dict[str, list[float]]], answers: dict[str, Answers], contenders: list[str]
) -> list[str]:
    """Print the table; returns the contenders whose figures were refused."""
    refused = report_answers(answers, "every measured run, saturated and one connection")
    med = {
        name: {k: median(v) for k, v in results[name].items()}
        for name in contenders
        if name not in refused
    }
    base = next((med[n] for n in med if n.endswith(f"@{PYTHONS_OWN}")), None)
    print("\nSwitch interval, medians over rounds (req/s saturated; latency with one connection)")
    print(f"{'interval s':<12}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs':>8}"
          + (f"{'req/s vs 5 ms':>15}{'p99 vs 5 ms':>13}" if base else ""))  # fmt: skip
    for name in contenders:
        if name in refused:
            print(f"{name.split('@')[1]:<12}{answers[name].refusal()}")
            continue
        m = med[name]
        line = (f"{name.split('@')[1]:<12}{m['rps']:>8.0f}{m['p50']:>9.3f}"
                f"{m['p99']:>9.3f}{m['app_us']:>8.0f}")  # fmt: skip
        if base:
            line += f"{m['rps'] / base['rps']:>15.2f}{m['p99'] / base['p99']:>13.2f}"
        print(line)
    print(load_average())
    return refused


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
        serve(args.contender, args.port, args.redis, args.dir, args.server, args.quota_scale)
        return
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 1, 0
    args.monitor = 0  # bench.stack's MONITOR window: not for this scenario
    contenders = names(args.stack, args.intervals)
    print(f"bench.switch: gk-{args.stack} at switch intervals {', '.join(args.intervals)} s")
    measured = run(args, MODULE, contenders)
    refused = report(measured["results"], measured["answers"], contenders)
    exit_if_refused("bench.switch", refused)


if __name__ == "__main__":
    main()
