"""Where a request's time goes: `python -m bench.profile` (pyinstrument, from the bench extra).

Drives the whole stack of ``bench.stack`` in-process (the ASGI app called directly, no HTTP
server: what is left is gatekeeper's own cost plus the hello-world app's) and prints:

- CPU per request, bare app vs behind gatekeeper, without a profiler (``process_time``, all
  threads, the decision log's writer included), median of interleaved rounds;
- the median of each stage's timer over the same requests (the ``metrics`` of the decision
  events: identify, inspect, locate, signals, input + policy, quotas, app + shaping);
- a pyinstrument profile of the event-loop thread over ``--requests`` more requests (the
  decision log's writer thread is not in it: ``bench.decision_log`` measures that).

``--storage redis`` puts quotas, signals and continuity on a throw-away redis-server.

Every answer's status is counted (``Non-2xx answers``): if any measured request was answered
anything but 2xx, no CPU figure or profile is printed (a refusal's path is not a request's) and
the script exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from bench._common import Answers, exit_if_refused, median, redis_server, report_answers
from bench._load import load_average
from bench._stack import Lifespan, bench_settings, call, hello_app, http_scope, protected_app


async def _cpu_per_request(app: Any, requests: int, answers: Answers) -> float:
    template = http_scope()
    statuses = []
    started = time.process_time()
    for _ in range(requests):
        statuses.append(await call(app, template))
    for status in statuses:
        answers.count(status)
    return (time.process_time() - started) / requests * 1e6


async def measure(storage: str, directory: Path, args: argparse.Namespace) -> Any:
    bare, gk = hello_app(), protected_app(bench_settings(directory, storage))
    template = http_scope()
    async with Lifespan(bare), Lifespan(gk):
        status = 0
        for _ in range(args.warmup):
            status = await call(gk, template)
            await call(bare, template)
        if status != 200:
            raise SystemExit(f"gatekeeper answered {status}, not 200: see {directory}/log")
        samples: dict[str, list[float]] = {"bare": [], "gatekeeper": []}
        answers = {name: Answers() for name in samples}
        for _ in range(args.rounds):
            samples["bare"].append(await _cpu_per_request(bare, args.per_round, answers["bare"]))
            samples["gatekeeper"].append(
                await _cpu_per_request(gk, args.per_round, answers["gatekeeper"])
            )
        profiled = None
        if not args.no_profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=args.interval, async_mode="disabled")
            profiler.start()
            statuses = [await call(gk, template) for _ in range(args.requests)]
            profiler.stop()
            for status in statuses:
                answers["gatekeeper"].count(status)
            profiled = profiler
    if refused := report_answers(answers, "every timed or profiled request"):
        for name in refused:
            print(f"CPU per request, stage timers and profile, {name}: {answers[name].refusal()}")
        exit_if_refused("bench.profile", refused)
    b, g = median(samples["bare"]), median(samples["gatekeeper"])
    from redis.utils import HIREDIS_AVAILABLE

    client = "hiredis" if HIREDIS_AVAILABLE else "pure-Python parser"
    print(f"CPU per request in-process ({storage}, redis-py with {client}; medians of "
          f"{args.rounds} rounds of {args.per_round}): bare {b:.0f} µs, behind gatekeeper "
          f"{g:.0f} µs (+{g - b:.0f} µs, {g / b:.0f}x); {load_average()}")  # fmt: skip
    events = [
        orjson.loads(line)
        for log in sorted((directory / "log").glob("decisions*.jsonl"))
        for line in log.read_bytes().splitlines()
        if b'"metrics"' in line
    ][-args.rounds * args.per_round :]
    names = sorted({k for e in events for k in e["metrics"]})
    print("stage timers (median µs over the measured requests; the policy timer includes")
    print("building the input document and validating the decision):")
    for name in names:
        values = [e["metrics"][name] for e in events if name in e["metrics"]]
        print(f"  {name.removeprefix('timer_'):<32}{statistics.median(values) / 1000:>8.1f}")
    if profiled is not None:
        text = profiled.output_text(unicode=True, color=False, show_all=args.all)
        print(text)
    return profiled


def write_html(profiled: Any, path: str) -> None:
    Path(path).write_text(profiled.output_html())
    print(f"HTML profile written to {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--storage", choices=["memory", "redis"], default="redis")
    parser.add_argument("--warmup", type=int, default=500, help="requests before measuring")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of CPU timing")
    parser.add_argument("--per-round", type=int, default=1000, help="requests per round")
    parser.add_argument("--requests", type=int, default=5000, help="requests profiled")
    parser.add_argument("--interval", type=float, default=0.0002, help="sampling interval, s")
    parser.add_argument("--all", action="store_true", help="show every frame")
    parser.add_argument("--no-profile", action="store_true", help="only the CPU figures")
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    parser.add_argument(
        "--no-hiredis",
        action="store_true",
        help="redis-py's pure-Python reply parser, as before hiredis was a dependency (A/B)",
    )
    parser.add_argument("--quick", action="store_true", help="a few requests: a smoke test")
    args = parser.parse_args(argv)
    if args.no_hiredis:
        if "redis" in sys.modules:
            parser.error("--no-hiredis must take effect before redis is imported")
        sys.modules["hiredis"] = None  # type: ignore[assignment]  # import hiredis -> ImportError
    if args.quick:
        args.warmup, args.rounds, args.per_round, args.requests = 20, 1, 50, 50
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-prof-")))
        storage = stack.enter_context(redis_server()) if args.storage == "redis" else "memory://"
        profiled = asyncio.run(measure(storage, directory, args))
    if profiled is not None and args.html:
        write_html(profiled, args.html)


if __name__ == "__main__":
    main()
