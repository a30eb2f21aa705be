"""The signals stage at scale: ``python -m bench.signals_scale [SUBJECTS] [--per-subject N]``.

Warms a ``SignalState`` with SUBJECTS active subjects (``--per-subject`` requests each, 20 by
default, spread over one main window: links, prompt families, behavioural fingerprints,
account and behavioural clusters), then times requests of random subjects through the stage:
``inspect`` and ``observe`` + ``settle`` separately and together (wall time per request,
``perf_counter_ns``, p50 and p99; and CPU time per round, ``process_time``, median of rounds),
and one maintenance pass: in slices as the stage's background task runs it (the longest
slice is the longest the event loop stalls), then at once (``maintain``). Prints the state's
sizes, the process's RSS before and after warming and the bytes per subject that difference
gives, and the objects the cyclic garbage collector tracks for the state (``gc.get_objects()``
after warming less before) with the time of one full ``gc.collect()`` then: the event loop's
stall when the interpreter runs one. No HTTP request is sent.

Warming is fast: the request bodies come from a pool of 512 drawn once, and each body's prompt
work (scoring, skeleton, family sketch, features) is done once per body, then every warm-up
request goes through ``SignalState.apply`` as ``observe`` and ``settle`` would publish it; the
timed requests go through the whole stage. ``--profile`` prints a cProfile of the timed part,
``--profile-maintain`` one of the one-shot ``maintain``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import random
import statistics
import time
from typing import Any

from gatekeeper.contract import Decision, Network, Subject
from gatekeeper.reasoning.shaper import ReasoningStats
from gatekeeper.signals import MemorySignalStore, SignalStage, SignalState
from gatekeeper.signals.stage import run_maintenance
from gatekeeper.signals.state import Observation

PROMPTS = (
    "a shop sells {w} in boxes of {n}. if a customer needs {m} {w}, how many boxes must be "
    "bought and how many {w} are left over?",
    "how do i {v} a {w} in python without breaking the {x} tests?",
    "Solve step by step and show your reasoning: {n} times {m} minus {n}.",
    "write a short story about a {w} who wants to {v} the {x}.",
)
WORDS = ("kite", "queue", "lantern", "socket", "parser", "garden", "ticket", "rocket")
UA = "OpenAI/Python 1.54.4"
POOL = 512


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def body(rng: random.Random) -> dict[str, object]:
    text = rng.choice(PROMPTS).format(
        w=rng.choice(WORDS), v=rng.choice(WORDS), x=rng.choice(WORDS),
        n=rng.randint(2, 999), m=rng.randint(2, 999),
    )  # fmt: skip
    return {
        "model": "m",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": rng.choice((256, 512, 1024)),
        "temperature": rng.choice((None, 0.2, 0.7)),
    }


def population(rng: random.Random, subjects: int) -> list[tuple[Subject, Network]]:
    """The benchmark's subjects: orgs of three, payment cards drawn among as many as there are
    subjects (some shared), addresses in 250 /24s; each with the network it sends from."""
    return [
        (
            Subject(
                id=f"s{i:06d}",
                org=f"o{i // 3}",
                payment_fingerprint=f"p{rng.randrange(subjects)}",
                account_age_days=rng.uniform(0, 900),
            ),
            Network(client_ip=f"10.{i % 250}.{rng.randrange(250)}.7"),
        )
        for i in range(subjects)
    ]


async def prompt_work(
    stage: SignalStage, pool: list[dict[str, object]]
) -> list[tuple[str | None, tuple[str, ...], Any]]:
    """Each body's template, band keys and features, from one ``inspect`` each: what a
    request's context carries to ``observe``."""
    probe = Subject(id="probe")
    prepared = []
    for doc in pool:
        ctx = await stage.inspect(
            probe, Network(), doc, reasoning_requested=True, user_agent=UA, model="m"
        )  # fmt: skip
        prepared.append((ctx.template, ctx.bands, ctx.features))
    return prepared


def rss_bytes() -> int:
    """The process's resident set now (not the peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def full_collection_ms() -> float:
    """One full ``gc.collect()``: the best of three (the first also frees what is garbage)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def percentile(values: list[int], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] / 1000


async def main(
    subjects: int, per_subject: int, rounds: int, profile: bool, profile_maintain: bool = False
) -> None:
    rng = random.Random(7)
    clock = Clock()
    state = SignalState({"10m": 600, "1h": 3600, "24h": 86400}, "1h")
    stage = SignalStage(
        MemorySignalStore(state), link_by=["payment", "org", "network+user_agent"], clock=clock
    )
    stage._next_maintenance = float("inf")  # maintenance timed separately
    people = population(rng, subjects)
    pool = [body(rng) for _ in range(POOL)]
    allow = Decision(allow=True)
    stats = ReasoningStats(exposed_tokens=120)
    prepared = await prompt_work(stage, pool)
    links = [stage._links(subject, network, UA) for subject, network in people]
    gc.collect()
    tracked_before = len(gc.get_objects())
    base_ms = full_collection_ms()
    rss_before = rss_bytes()
    started = time.perf_counter()
    start = clock.now
    warm = subjects * per_subject
    apply = state.apply
    for k in range(warm):
        at = start + 3600 * k / warm
        i = rng.randrange(subjects)
        subject = people[i][0]
        template, bands, features = prepared[rng.randrange(POOL)]
        apply(
            Observation(at, subject.id, requests=1, reasoning_requests=1,
                        template=template, links=links[i],
                        bands=bands, features=features, age_days=subject.account_age_days)
        )  # fmt: skip
        apply(Observation(at, subject.id, tokens=120, reasoning_tokens=120, reasoning_exposed=1))
    clock.now = start + 3600
    warm_seconds = time.perf_counter() - started
    gc.collect()
    rss_after = rss_bytes()
    # What the collector's full collections cost with this state: the objects it tracks,
    # and one full collection (against one before warming: the benchmark's own subjects
    # and request bodies, the interpreter's modules).
    tracked = len(gc.get_objects()) - tracked_before
    state_ms = full_collection_ms()

    inspect_ns: list[int] = []
    after_ns: list[int] = []
    cpu_rounds: list[float] = []
    profiler = cProfile.Profile() if profile else None
    ns = time.perf_counter_ns
    for _ in range(rounds):
        n = 2000
        chosen = [(rng.choice(people), rng.choice(pool)) for _ in range(n)]
        if profiler is not None:
            profiler.enable()
        t0 = time.process_time()
        for (subject, network), doc in chosen:
            clock.now += 0.01
            a = ns()
            ctx = await stage.inspect(
                subject, network, doc, reasoning_requested=True, user_agent=UA, model="m"
            )  # fmt: skip
            b = ns()
            stage.observe(ctx, allow)
            stage.settle(ctx, stats, 200)
            c = ns()
            inspect_ns.append(b - a)
            after_ns.append(c - b)
        cpu_rounds.append((time.process_time() - t0) / n * 1e6)
        if profiler is not None:
            profiler.disable()
    total_ns = [a + b for a, b in zip(inspect_ns, after_ns, strict=True)]
    # The background task's way: a pass in slices of about 2 ms; then the same pass at
    # once (``maintain``, as inline mode runs it), on the state the first one left.
    t0 = time.process_time()
    durations: list[float] = []
    slices, longest, spent = await run_maintenance(state, clock.now, durations=durations)
    durations.sort()
    pass_ms = (time.process_time() - t0) * 1e3
    maintainer = cProfile.Profile() if profile_maintain else None
    if maintainer is not None:
        maintainer.enable()
    t0 = time.process_time()
    state.maintain(clock.now)
    maintain_ms = (time.process_time() - t0) * 1e3
    if maintainer is not None:
        maintainer.disable()
    rss_end = rss_bytes()
    grown = rss_after - rss_before
    print(f"subjects warmed: {subjects:,} ({warm:,} requests over one main window, "
          f"{warm_seconds:.0f} s)")  # fmt: skip
    for name, values in (("inspect", inspect_ns), ("observe + settle", after_ns),
                         ("whole stage", total_ns)):  # fmt: skip
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"{name}: p50 {p50:.1f} µs, p99 {p99:.1f} µs")
    print(f"whole stage, CPU time: median {statistics.median(cpu_rounds):.1f} µs per request "
          f"(rounds: {', '.join(f'{s:.0f}' for s in cpu_rounds)})")  # fmt: skip
    print(f"maintenance pass: {slices} slices, longest {longest * 1e3:.1f} ms (the next "
          f"{', '.join(f'{d * 1e3:.1f}' for d in durations[-2:-5:-1])} ms; median "
          f"{statistics.median(durations) * 1e3:.1f} ms), {spent * 1e3:.0f} ms in slices, "
          f"{pass_ms:.0f} ms CPU")  # fmt: skip
    print(f"maintain (at once): {maintain_ms:.0f} ms")
    print(f"state: {state.stats()}")
    print(f"RSS: {rss_before / 2**20:.0f} MB before warming, {rss_after / 2**20:.0f} MB after, "
          f"{rss_end / 2**20:.0f} MB at the end")  # fmt: skip
    print(f"memory: {grown / subjects:,.0f} bytes per subject ({grown / 2**20:.0f} MB in all)")
    print(f"GC: {tracked:,} tracked objects ({tracked / subjects:.1f} per subject), full "
          f"collection {state_ms:.0f} ms ({base_ms:.0f} ms before warming)")  # fmt: skip
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    if maintainer is not None:
        pstats.Stats(maintainer).sort_stats("cumulative").print_stats(40)


def parse(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(prog="python -m bench.signals_scale")
    parser.add_argument("subjects", nargs="?", type=int, default=100_000)
    parser.add_argument("--per-subject", type=int, default=20, help="warm-up requests each")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds of 2,000 requests")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed rounds")
    parser.add_argument("--profile-maintain", action="store_true", help="cProfile maintain")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    asyncio.run(
        main(args.subjects, args.per_subject, args.rounds, args.profile, args.profile_maintain)
    )
