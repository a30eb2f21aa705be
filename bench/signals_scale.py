"""The signals stage at scale: `python -m bench.signals_scale [SUBJECTS]` (default 100,000).

Warms a ``SignalState`` with SUBJECTS active subjects (20 requests each over the main window:
links, prompt families, behavioural fingerprints, account and behavioural clusters), then
times ``SignalStage.inspect`` + ``observe`` + ``settle`` of one request of a random subject
(CPU time, ``time.process_time``, median of rounds) and one ``maintain``. Prints the state's
sizes and the process's peak RSS. No HTTP request is sent.
"""

from __future__ import annotations

import asyncio
import random
import resource
import statistics
import sys
import time

from gatekeeper.contract import Decision, Network, Subject
from gatekeeper.reasoning.shaper import ReasoningStats
from gatekeeper.signals import MemorySignalStore, SignalStage, SignalState

PROMPTS = (
    "a shop sells {w} in boxes of {n}. if a customer needs {m} {w}, how many boxes must be "
    "bought and how many {w} are left over?",
    "how do i {v} a {w} in python without breaking the {x} tests?",
    "Solve step by step and show your reasoning: {n} times {m} minus {n}.",
    "write a short story about a {w} who wants to {v} the {x}.",
)
WORDS = ("kite", "queue", "lantern", "socket", "parser", "garden", "ticket", "rocket")


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


async def main(subjects: int) -> None:
    rng = random.Random(7)
    clock = Clock()
    state = SignalState({"10m": 600, "1h": 3600, "24h": 86400}, "1h")
    stage = SignalStage(
        MemorySignalStore(state), link_by=["payment", "org", "network+user_agent"], clock=clock
    )
    stage._next_maintenance = float("inf")  # maintenance timed separately
    people = [
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
    allow = Decision(allow=True)
    stats = ReasoningStats(exposed_tokens=120)
    start = clock.now
    warm = subjects * 20
    for k in range(warm):
        clock.now = start + 3600 * k / warm
        subject, network = rng.choice(people)
        ctx = await stage.inspect(subject, network, body(rng), reasoning_requested=True,
                                  user_agent="OpenAI/Python 1.54.4")  # fmt: skip
        stage.observe(ctx, allow)
        stage.settle(ctx, stats, 200)
    samples = []
    for _ in range(9):
        n = 2000
        chosen = [(rng.choice(people), body(rng)) for _ in range(n)]
        t0 = time.process_time()
        for (subject, network), doc in chosen:
            clock.now += 0.01
            ctx = await stage.inspect(subject, network, doc, reasoning_requested=True,
                                      user_agent="OpenAI/Python 1.54.4")  # fmt: skip
            stage.observe(ctx, allow)
            stage.settle(ctx, stats, 200)
        samples.append((time.process_time() - t0) / n * 1e6)
    t0 = time.process_time()
    state.maintain(clock.now)
    maintain_ms = (time.process_time() - t0) * 1e3
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"subjects warmed: {subjects:,} ({warm:,} requests over one main window)")
    print(f"inspect + observe + settle: median {statistics.median(samples):.1f} µs per request "
          f"(rounds: {', '.join(f'{s:.0f}' for s in samples)})")  # fmt: skip
    print(f"maintain: {maintain_ms:.0f} ms")
    print(f"state: {state.stats()}")
    print(f"peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
