"""The decision log's throughput, side by side in one run: `python -m bench.decision_log`.

- ``serialise only``   the old, unchained cost per event: ``orjson.dumps`` of the event;
- ``seal``             the writer's CPU per event without I/O: mask (settings rules, the
                       policy's rules, the secret-field scan) + canonical JSON + SHA-256 chain;
- ``chained JSONL``    end to end through ``DecisionLog``: ``record()`` → queue → writer thread →
                       masked, chained, checkpoint signed every 1000 entries, written to a file;
- ``durable, N tasks`` N concurrent requests each awaiting ``record_durable`` (write + fsync,
                       group commit), for N = 1, 16, 256; also the fsyncs per event;
- ``verify``           ``gatekeeper audit verify``'s walk over the log just written.

Events are realistic middleware events (``DecisionRecord.to_event``), built before timing.
Every figure is a median of interleaved rounds; events/CPU-second is the per-core figure (the
event loop and the writer thread share one interpreter lock, so the log uses one core).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.audit import DecisionLog, JsonlFileSink, Masker, Signer, parse_rules
from gatekeeper.audit.chain import Chain
from gatekeeper.audit.keys import Keyring
from gatekeeper.audit.reader import find_log_files
from gatekeeper.audit.verify import verify_log
from tests.audit.conftest import decision_event

POLICY_RULES = [{"op": "hash", "path": "/input/subject/payment_fingerprint"}]


def masker() -> Masker:
    return Masker(
        parse_rules(["/input/request/user_agent"]),
        hmac_key=b"bench-key",
        policy_rules=lambda: POLICY_RULES,
    )


def events(n: int) -> list[dict[str, Any]]:
    return [decision_event(i) for i in range(n)]


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_serialise(n: int) -> tuple[float, float]:
    batch = events(n)
    return timed(lambda: [orjson.dumps(e) for e in batch])


def bench_seal(n: int) -> tuple[float, float]:
    batch, chain, mask = events(n), Chain(), masker()

    def run() -> None:
        for event in batch:
            mask.apply(event)
            chain.seal(event)

    return timed(run)


def bench_chained(n: int, directory: Path, signer: Signer) -> tuple[float, float]:
    batch = events(n)
    path = directory / f"chained-{time.monotonic_ns()}.jsonl"

    async def run() -> None:
        log = DecisionLog(JsonlFileSink(path), signer=signer, masker=masker(), queue_size=n + 1)
        for event in batch:
            log.record(event)
        await log.aclose()

    return timed(lambda: asyncio.run(run()))


def bench_verify(log: Path) -> tuple[int, float, float]:
    count = sum(1 for _ in log.open("rb"))
    keyring = Keyring(log.parent / "keys")
    return (count, *timed(lambda: verify_log(find_log_files([log]), keyring)))


class CountingSink(JsonlFileSink):
    syncs = 0

    def sync(self) -> None:
        CountingSink.syncs += 1
        super().sync()


def bench_durable(n: int, tasks: int, directory: Path) -> tuple[float, float, float]:
    batch = events(n)
    path = directory / f"durable-{tasks}-{time.monotonic_ns()}.jsonl"
    CountingSink.syncs = 0

    async def worker(log: DecisionLog, mine: list[dict[str, Any]]) -> None:
        for event in mine:
            await log.record_durable(event, 30.0)

    async def run() -> None:
        log = DecisionLog(CountingSink(path), masker=masker())
        await asyncio.gather(*(worker(log, batch[i::tasks]) for i in range(tasks)))
        await log.aclose()

    wall, cpu = timed(lambda: asyncio.run(run()))
    return wall, cpu, CountingSink.syncs / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--durable-events", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, nd = args.events, args.durable_events
    results: dict[str, list[tuple[float, float, float]]] = {}

    def add(name: str, count: int, wall: float, cpu: float, extra: float = 0.0) -> None:
        results.setdefault(name, []).append((count / wall, count / cpu, extra))

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        signer = Signer.from_files(directory / "keys" / "k.pem", directory / "keys")
        sample = orjson.dumps(events(1)[0])
        print(f"event size: {len(sample)} bytes (orjson); {n} events per round")
        for _ in range(args.rounds):
            add("serialise only", n, *bench_serialise(n))
            add("seal (mask+canonical+sha256)", n, *bench_seal(n))
            add("chained JSONL (end to end)", n, *bench_chained(n, directory, signer))
            for tasks in (1, 16, 256):
                wall, cpu, syncs = bench_durable(nd, tasks, directory)
                add(f"durable, {tasks} tasks", nd, wall, cpu, syncs)
            add("verify", *bench_verify(sorted(directory.glob("chained-*.jsonl"))[-1]))

    base = statistics.median(r[0] for r in results["serialise only"])
    print(f"\n{'':<30} {'events/s':>12} {'events/CPU-s':>14} {'vs serialise':>13} {'fsync/ev':>9}")
    for name, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        per_cpu = statistics.median(r[1] for r in rows)
        syncs = statistics.median(r[2] for r in rows)
        fsyncs = f"{syncs:.3f}" if name.startswith("durable") else ""
        print(f"{name:<30} {rate:>12,.0f} {per_cpu:>14,.0f} {rate / base:>12.3f}x {fsyncs:>9}")


if __name__ == "__main__":
    main()
