"""Memory over many requests: `python -m bench.memory [--requests 1000000]`.

Drives the whole stack of ``bench.stack`` (the hello-world model API behind gatekeeper:
embedded engine, in-memory quotas, signals and continuity, the chained decision log written to
a temporary directory) in-process, with no HTTP server: a plain loop of ASGI calls, as fast as
the stack answers, so that the count reaches the millions in minutes. Every ``--every``
requests it samples the process's resident memory (``VmRSS``), the objects the garbage
collector tracks, and, with ``--tracemalloc``, Python's allocated bytes and the lines that grew
most.

Printed: the samples, then the growth after the warm-up (the first sample is the baseline: by
then caches, pools and the decision log's queue have reached their working size) as a total,
per 100,000 requests, and against the sampling noise (the largest drop seen between two
samples, which is what the allocator gives back and takes again on its own). The default
(50,000 requests) takes about two minutes; the target run is ``--requests 1000000``.

Every answer's status is counted: a soak whose requests were answered anything but 2xx (a
refusal takes another, cheaper path than the request measured) reports neither its rate nor
its growth, and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import tempfile
import time
import tracemalloc
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench._common import Answers, exit_if_refused, redis_server, report_answers
from bench._load import load_average
from bench._stack import (
    Lifespan,
    bench_settings,
    call,
    gatekeeper_of,
    http_scope,
    protected_app,
)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def soak(
    args: argparse.Namespace, storage: str, directory: Path, answers: Answers
) -> list[dict[str, Any]]:
    app = protected_app(bench_settings(directory, storage))
    template = http_scope()
    samples: list[dict[str, Any]] = []
    snapshot = None
    async with Lifespan(app):
        for _ in range(args.warmup):
            if await call(app, template) != 200:
                raise SystemExit(f"gatekeeper refused the benchmark's request: see {directory}")
        if args.tracemalloc:
            tracemalloc.start(5)
            snapshot = tracemalloc.take_snapshot()
        done, started = 0, time.monotonic()
        while done < args.requests:
            for _ in range(args.every):
                answers.count(await call(app, template))
            done += args.every
            await asyncio.sleep(0.05)  # let the decision log's writer catch up before sampling
            sample = {
                "requests": done,
                "seconds": time.monotonic() - started,
                "rss": rss_bytes(),
                "objects": len(gc.get_objects()),
            }
            if args.tracemalloc:
                sample["traced"] = tracemalloc.get_traced_memory()[0]
            samples.append(sample)
            print(f"  {done:>9,} requests  {sample['seconds']:>6.0f} s  "
                  f"RSS {sample['rss'] / 2**20:7.1f} MiB  objects {sample['objects']:>9,}"
                  + (f"  traced {sample['traced'] / 2**20:7.1f} MiB" if args.tracemalloc
                     else "") + f"  {answers.describe()}", flush=True)  # fmt: skip
        log = gatekeeper_of(app).decision_log
        print(f"  decision log: {log.dropped} events dropped (the writer kept up: 0)")
        if snapshot is not None:
            grown = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")[:8]
            print("  tracemalloc, lines that grew most since the warm-up:")
            for stat in grown:
                print(f"    {stat.size_diff / 1024:+9.1f} KiB  {stat.traceback}")
            tracemalloc.stop()
    return samples


def report(
    samples: list[dict[str, Any]], seconds: float, answers: Answers
) -> dict[str, float] | None:
    """Print the growth; None (and a refusal) if some answer was not 2xx."""
    if report_answers({"gatekeeper": answers}, "every sampled request"):
        print(f"requests/s and memory growth: {answers.refusal()}")
        return None
    first, last = samples[0], samples[-1]
    rate = last["requests"] / last["seconds"]
    span = last["requests"] - first["requests"]
    drops = [max(0, a["rss"] - b["rss"]) for a, b in itertools.pairwise(samples)]
    noise = max([*drops, 0])
    growth = last["rss"] - first["rss"]
    peak = max(s["rss"] for s in samples) - first["rss"]
    per = growth / span * 100_000 if span else 0.0
    print(f"\n{last['requests']:,} requests in {last['seconds']:.0f} s ({rate:,.0f} requests/s "
          f"in-process; {seconds:.0f} s in all, start-up included); {load_average()}")  # fmt: skip
    print(f"RSS after the first sample: {first['rss'] / 2**20:.1f} MiB; at the end "
          f"{last['rss'] / 2**20:.1f} MiB: growth {growth / 2**20:+.2f} MiB over {span:,} "
          f"requests ({per / 1024:+.1f} KiB per 100,000), peak {peak / 2**20:+.2f} MiB; "
          f"noise (largest drop between samples) {noise / 2**20:.2f} MiB")  # fmt: skip
    print(f"objects tracked by the GC: {first['objects']:,} -> {last['objects']:,} "
          f"({last['objects'] - first['objects']:+,})")  # fmt: skip
    if "traced" in first:
        traced = last["traced"] - first["traced"]
        print(f"Python allocations (tracemalloc): {traced / 2**20:+.2f} MiB")
    return {"growth_mib": growth / 2**20, "noise_mib": noise / 2**20, "per_100k_kib": per / 1024}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000, help="requests (50,000)")
    parser.add_argument("--every", type=int, default=0, help="sample every N (requests/10)")
    parser.add_argument("--warmup", type=int, default=5_000, help="requests before sampling")
    parser.add_argument("--storage", choices=["memory", "redis"], default="memory")
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python allocations")
    parser.add_argument("--quick", action="store_true", help="a few hundred requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup = 400, 50
    args.every = args.every or max(1, args.requests // 10)
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mem-")))
        storage = stack.enter_context(redis_server()) if args.storage == "redis" else "memory://"
        print(f"bench.memory: {args.requests:,} requests in-process ({storage}), "
              f"sampled every {args.every:,}; {load_average()}")  # fmt: skip
        started = time.monotonic()
        answers = Answers()
        samples = asyncio.run(soak(args, storage, directory, answers))
        if report(samples, time.monotonic() - started, answers) is None:
            exit_if_refused("bench.memory", ["gatekeeper"])


if __name__ == "__main__":
    main()
