"""The decision log's throughput, side by side in one run: `python -m bench.decision_log`.

- ``serialise only``   the old, unchained cost per event: ``orjson.dumps`` of the event;
- ``seal``             the writer's CPU per event without I/O: mask (settings rules, the
                       policy's rules, the secret-field scan) + canonical JSON + SHA-256 chain;
- ``chained JSONL``    end to end through ``DecisionLog``: ``record()`` → queue → writer thread →
                       masked, chained, checkpoint signed every 1000 entries, written to a file;
                       all events recorded at once, so the writer takes them in large batches;
- ``light load``       the same log at light load: one event at a time, each followed by
                       ``await asyncio.sleep(0)`` (or by a ``--pause`` of 0.5 ms, as between the
                       requests of a lightly loaded server), so most batches hold one event. The
                       same loop without a log is timed too: its CPU is taken off to give the
                       log's own cost per event (``log µs/ev``); ``--linger`` sets the log's
                       ``linger_seconds`` (how long its writer waits to group such events);
- ``durable, N tasks`` N concurrent requests each awaiting ``record_durable`` (write + fsync,
                       group commit), for N = 1, 16, 256; also the fsyncs per event;
- ``verify``           ``gatekeeper audit verify``'s walk over the log just written;
- ``--stack memory``   (or ``redis``; off by default) the whole stack of ``bench.profile``
                       in-process, requests one after another as at light load: CPU per request
                       with the log against the same stack with a no-op log, interleaved rounds,
                       and the writer thread's own CPU per event (its thread's CPU clock).

Events are realistic middleware events (``DecisionRecord.to_event``), built before timing;
``--event stack`` logs the event one request through ``bench.stack``'s stack records instead
(captured in-process: larger, with the signals and the whole input).
Every figure is a median of interleaved rounds; events/CPU-second is the per-core figure (the
event loop and the writer thread share one interpreter lock, so the log uses one core): the
CPU of the whole process, every thread included (``time.process_time``). ``ev/batch`` is events
per ``write_batch`` of the log file.

The log's own figures send no HTTP request; the requests of ``--stack`` and of ``--event
stack`` are counted by status (``Non-2xx answers``): a refused request records another event
than the one measured, so with any answer but 2xx no figure of theirs is printed and the
script exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from bench._common import Answers, exit_if_refused, report_answers
from bench._stack import (
    Lifespan,
    bench_settings,
    call,
    gatekeeper_of,
    http_scope,
    protected_app,
)
from gatekeeper.audit import DecisionLog, JsonlFileSink, Masker, Signer, parse_rules
from gatekeeper.audit.chain import Chain
from gatekeeper.audit.keys import Keyring
from gatekeeper.audit.reader import find_log_files
from gatekeeper.audit.verify import verify_log
from tests.audit.conftest import decision_event

#: Extra ``DecisionLog`` options for the light-load runs (``--linger``).
LOG_OPTIONS: dict[str, Any] = {}
POLICY_RULES = [{"op": "hash", "path": "/input/subject/payment_fingerprint"}]


def masker() -> Masker:
    return Masker(
        parse_rules(["/input/request/user_agent"]),
        hmac_key=b"bench-key",
        policy_rules=lambda: POLICY_RULES,
    )


#: ``--event stack``: the event the whole stack records for one request, captured once.
STACK_EVENT: list[dict[str, Any]] = []


def events(n: int) -> list[dict[str, Any]]:
    if not STACK_EVENT:
        return [decision_event(i) for i in range(n)]
    raw = orjson.dumps(STACK_EVENT[0])
    batch = [orjson.loads(raw) for _ in range(n)]
    for i, event in enumerate(batch):
        event["decision_id"] = f"{i:08d}-{event['decision_id'][9:]}"
    return batch


def capture_stack_event() -> dict[str, Any]:
    """The decision event of one request through ``bench.stack``'s gk-memory stack (in-process:
    the same middleware, pack, subject, address and answer), as ``record()`` receives it."""
    captured: list[dict[str, Any]] = []
    answers = Answers()

    class Capture(NoLog):
        def record(self, event: dict[str, Any]) -> None:
            captured.append(orjson.loads(orjson.dumps(event)))

    async def run(directory: Path) -> None:
        app = protected_app(bench_settings(directory, "memory://"))
        async with Lifespan(app):
            gk = gatekeeper_of(app)
            log, gk.decision_log = gk.decision_log, Capture()
            for _ in range(3):
                answers.count(await call(app, http_scope()))
            gk.decision_log = log

    with tempfile.TemporaryDirectory(prefix="bench-dl-event-") as tmp:
        asyncio.run(run(Path(tmp)))
    if report_answers({"--event stack": answers}, "the requests whose event is logged"):
        print(f"the stack's event: {answers.refusal()}")
        exit_if_refused("bench.decision_log", ["--event stack"])
    return captured[-1]


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


class CountingSink(JsonlFileSink):
    """The log file, counting its batches and fsyncs (class-wide: one log at a time)."""

    syncs = 0
    batches = 0

    def write_batch(self, lines: list[bytes]) -> None:
        CountingSink.batches += 1
        super().write_batch(lines)

    def sync(self) -> None:
        CountingSink.syncs += 1
        super().sync()

    @classmethod
    def reset(cls) -> None:
        cls.syncs = cls.batches = 0


def bench_chained(n: int, directory: Path, signer: Signer) -> tuple[float, float, float]:
    batch = events(n)
    path = directory / f"chained-{time.monotonic_ns()}.jsonl"
    CountingSink.reset()

    async def run() -> None:
        log = DecisionLog(CountingSink(path), signer=signer, masker=masker(), queue_size=n + 1)
        for event in batch:
            log.record(event)
        await log.aclose()

    wall, cpu = timed(lambda: asyncio.run(run()))
    return wall, cpu, n / max(1, CountingSink.batches - 2)  # less the start and shutdown writes


def bench_light(
    n: int, directory: Path, signer: Signer, pause: float, with_log: bool
) -> tuple[float, float, float]:
    """Events one at a time, each followed by ``asyncio.sleep(pause)``; ``with_log=False``
    times the same loop with nothing recorded (the baseline taken off the log's figure)."""
    batch = events(n)
    path = directory / f"light-{time.monotonic_ns()}.jsonl"

    async def run() -> tuple[float, float, float]:
        log = DecisionLog(CountingSink(path), signer=signer, masker=masker(), **LOG_OPTIONS)
        log.record(events(1)[0])  # started (chain recovered, start entry written) before timing
        await log.flush()
        CountingSink.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        for event in batch:
            if with_log:
                log.record(event)
            await asyncio.sleep(pause)
        await log.flush()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        writes = CountingSink.batches
        await log.aclose()
        return wall, cpu, (n / writes if with_log and writes else 0.0)

    return asyncio.run(run())


def bench_verify(log: Path) -> tuple[int, float, float]:
    count = sum(1 for _ in log.open("rb"))
    keyring = Keyring(log.parent / "keys")
    return (count, *timed(lambda: verify_log(find_log_files([log]), keyring)))


def bench_durable(n: int, tasks: int, directory: Path) -> tuple[float, float, float, float]:
    batch = events(n)
    path = directory / f"durable-{tasks}-{time.monotonic_ns()}.jsonl"
    CountingSink.reset()

    async def worker(log: DecisionLog, mine: list[dict[str, Any]]) -> None:
        for event in mine:
            await log.record_durable(event, 30.0)

    async def run() -> None:
        log = DecisionLog(CountingSink(path), masker=masker())
        await asyncio.gather(*(worker(log, batch[i::tasks]) for i in range(tasks)))
        await log.aclose()

    wall, cpu = timed(lambda: asyncio.run(run()))
    return wall, cpu, CountingSink.syncs / n, n / max(1, CountingSink.batches - 2)


class NoLog:
    """A decision log that writes nothing: what the stack costs without its log."""

    def record(self, event: dict[str, Any]) -> None:
        return None

    async def flush(self) -> None:
        return None


async def _stack(storage: str, directory: Path, rounds: int, per_round: int) -> None:
    app, template = protected_app(bench_settings(directory, storage)), http_scope()
    answers = {"log": Answers(), "no log": Answers()}
    async with Lifespan(app):
        for _ in range(300):
            answers["log"].count(await call(app, template))
        gk = gatekeeper_of(app)
        log, off = gk.decision_log, NoLog()
        await log.flush()
        writes = [0]
        write_batch = log.sink.write_batch

        def counted(lines: list[bytes]) -> None:
            writes[0] += 1
            write_batch(lines)

        log.sink.write_batch = counted
        thread = getattr(getattr(log, "writer", None), "_thread", None)  # its writer thread
        clock = time.pthread_getcpuclockid(thread.ident) if thread and thread.ident else None
        cpu: dict[str, list[float]] = {"log": [], "no log": []}
        writer: list[float] = []
        events_written = batches = 0
        for r in range(rounds):
            for name in ("log", "no log") if r % 2 == 0 else ("no log", "log"):
                gk.decision_log = log if name == "log" else off
                written, writes[0] = log.written, 0
                thread_cpu = time.clock_gettime(clock) if clock is not None else 0.0
                statuses = []
                started = time.process_time()
                for _ in range(per_round):
                    statuses.append(await call(app, template))
                await gk.decision_log.flush()
                cpu[name].append((time.process_time() - started) / per_round * 1e6)
                for status in statuses:
                    answers[name].count(status)
                if name == "log":
                    events_written += log.written - written
                    batches += writes[0]
                    if clock is not None:
                        used = time.clock_gettime(clock) - thread_cpu
                        writer.append(used / max(1, log.written - written) * 1e6)
        gk.decision_log = log
    if refused := report_answers(answers, "--stack: warm-up and every timed request"):
        print(f"\nwhole stack in-process ({storage}): " + "; ".join(
            f"{name} {answers[name].refusal()}" for name in refused))  # fmt: skip
        exit_if_refused("bench.decision_log", refused)
    size = max(len(line) for line in (directory / "log" / "decisions.jsonl").open("rb"))
    on, none = statistics.median(cpu["log"]), statistics.median(cpu["no log"])
    print(
        f"\nwhole stack in-process ({storage}, events up to {size:,} bytes; medians of {rounds} "
        f"interleaved rounds of {per_round} requests): CPU per request {on:,.0f} µs with the "
        f"log, {none:,.0f} µs with a no-op log: the log costs {on - none:+,.0f} µs per request"
    )
    if writer:
        print(
            f"  the writer thread: {statistics.median(writer):.0f} µs of CPU per event, "
            f"{events_written / max(1, batches):.1f} events per write"
        )


def bench_stack(storage: str, rounds: int, per_round: int) -> None:
    """The whole stack in-process (``bench.profile``'s), with its log and with a no-op one."""
    from bench._common import redis_server

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dl-")))
        url = stack.enter_context(redis_server()) if storage == "redis" else "memory://"
        asyncio.run(_stack(url, directory, rounds, per_round))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--light-events", type=int, help="light-load events (default events/10)")
    parser.add_argument("--pause", type=float, default=0.0005, help="light-load pause, s")
    parser.add_argument(
        "--linger", type=float, help="the log's linger_seconds at light load (default: its own)"
    )
    parser.add_argument("--durable-events", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3, help="0: only --stack")
    parser.add_argument(
        "--stack", choices=["memory", "redis"], help="also time the whole stack in-process"
    )
    parser.add_argument(
        "--event",
        choices=["test", "stack"],
        default="test",
        help="the events logged: the tests' decision event (test), or the one bench.stack's "
        "requests record (stack: larger, with the signals and the whole input)",
    )
    parser.add_argument("--stack-rounds", type=int, default=8)
    parser.add_argument("--stack-requests", type=int, default=1000, help="per round")
    args = parser.parse_args()
    n, nd = args.events, args.durable_events
    nl = args.light_events or max(1, n // 10)
    if args.event == "stack":
        STACK_EVENT.append(capture_stack_event())
    if args.linger is not None:
        LOG_OPTIONS["linger_seconds"] = args.linger
    #: name -> rows of (events/s, events/CPU-s, fsyncs/event, events/batch, CPU s per event)
    results: dict[str, list[tuple[float, float, float, float, float]]] = {}

    def add(
        name: str, count: int, wall: float, cpu: float, syncs: float = 0.0, per: float = 0.0
    ) -> None:
        results.setdefault(name, []).append((count / wall, count / cpu, syncs, per, cpu / count))

    light = [
        ("light load, sleep(0)", 0.0),
        (f"light load, {args.pause * 1e3:g} ms pause", args.pause),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        signer = Signer.from_files(directory / "keys" / "k.pem", directory / "keys")
        sample = orjson.dumps(events(1)[0])
        print(f"event size: {len(sample)} bytes (orjson); {n} events per round, {nl} at light load")
        print("Non-2xx answers: none possible, the log's figures send no HTTP request"
              + (" (the stack's event: see above)" if STACK_EVENT else ""))  # fmt: skip
        for _ in range(args.rounds):
            add("serialise only", n, *bench_serialise(n))
            add("seal (mask+canonical+sha256)", n, *bench_seal(n))
            wall, cpu, per = bench_chained(n, directory, signer)
            add("chained JSONL (end to end)", n, wall, cpu, per=per)
            for name, pause in light:
                wall, cpu, per = bench_light(nl, directory, signer, pause, with_log=True)
                add(name, nl, wall, cpu, per=per)
                add(
                    f"{name}: loop alone", nl, *bench_light(nl, directory, signer, pause, False)[:2]
                )
            for tasks in (1, 16, 256):
                wall, cpu, syncs, per = bench_durable(nd, tasks, directory)
                add(f"durable, {tasks} tasks", nd, wall, cpu, syncs, per)
            add("verify", *bench_verify(sorted(directory.glob("chained-*.jsonl"))[-1]))

    def median(name: str, column: int) -> float:
        return statistics.median(r[column] for r in results[name])

    if not results:  # --rounds 0: only the whole stack
        return (
            bench_stack(args.stack, args.stack_rounds, args.stack_requests) if args.stack else None
        )
    base = median("serialise only", 0)
    print(
        f"\n{'':<38} {'events/s':>10} {'events/CPU-s':>13} {'vs serialise':>13} "
        f"{'fsync/ev':>9} {'ev/batch':>9} {'log µs/ev':>10}"
    )
    for name in results:
        rate, per_cpu = median(name, 0), median(name, 1)
        fsyncs = f"{median(name, 2):.3f}" if name.startswith("durable") else ""
        batch = f"{median(name, 3):.2f}" if median(name, 3) else ""
        own = ""
        if f"{name}: loop alone" in results:  # the log's own CPU: less the loop without it
            own = f"{(median(name, 4) - median(f'{name}: loop alone', 4)) * 1e6:.1f}"
        print(
            f"{name:<38} {rate:>10,.0f} {per_cpu:>13,.0f} {rate / base:>12.3f}x "
            f"{fsyncs:>9} {batch:>9} {own:>10}"
        )

    if args.stack:
        bench_stack(args.stack, args.stack_rounds, args.stack_requests)


if __name__ == "__main__":
    main()
