"""The decision log's cost, both sealers side by side in one run: `python -m bench.decision_log`.

Each scenario runs once per round with ``audit.sealer = "thread"`` (the log's writer thread masks,
chains, signs and writes: it shares the interpreter lock with the event loop) and once with
``"process"`` (a writer process of the log's own does that; the worker's writer thread only
serialises each batch and waits on a pipe), interleaved, medians of the rounds (``--sealer``
picks one). Every log is started before timing (its writer process booted, the chain's start
entry written) and closed after, so the figures are the steady state's.

Per event, three CPU figures: ``loop``, the event loop thread's own (``time.thread_time``);
``worker``, the whole worker process (``time.process_time``: the loop and the log's writer
thread, what holds the one interpreter lock, the part the request path pays); ``total``, the
worker and the writer process (its ``/proc/<pid>/schedstat``). Light load and the busy loop are
also timed with no log at all, and that loop's CPU is taken off.

- ``serialise only``   ``orjson.dumps`` of the event (no log's writer involved);
- ``seal``             mask (settings rules, the policy's rules, the secret-field scan) +
                       canonical JSON + SHA-256 chain, no I/O, in this thread;
- ``burst``            ``--events`` calls of ``record()`` at once, then ``flush()``: the
                       writer takes them in large batches; checkpoint signed every 1000 entries;
- ``light load``       one event at a time, each followed by ``await asyncio.sleep(0)`` or by a
                       ``--pause`` (0.5 ms, as between the requests of a lightly loaded server);
                       ``--linger`` sets the log's ``linger_seconds``;
- ``durable, N tasks`` N concurrent requests each awaiting ``record_durable`` (write + fsync,
                       group commit), for N = 1, 16, 256; also the fsyncs per event;
- ``busy loop``        the interpreter lock's effect: a coroutine that works ``--busy-work`` µs
                       of pure Python (as a request's handling), records one event and yields,
                       timing each iteration, while the log seals beside it; its iteration
                       times' p50/p99/max and the wall time per iteration, against the same loop
                       with no log;
- ``verify``           ``gatekeeper audit verify``'s walk over a log just written;
- ``--stack memory``   (or ``redis``; off by default) the whole stack of ``bench.profile``
                       in-process, requests one after another as at light load, once per sealer:
                       CPU per request with the log against the same stack with a no-op log,
                       interleaved rounds, and the writer thread's and writer process's CPU.

Events are realistic middleware events (``DecisionRecord.to_event``), built before timing;
``--event stack`` logs the event one request through ``bench.stack``'s stack records instead
(captured in-process: larger, with the signals and the whole input). ``ev/batch`` is events per
batch written to the log file (in the writer process: per batch sent to it).

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
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
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
from gatekeeper.audit.process import ProcessSealer
from gatekeeper.audit.sealer import mask_and_seal
from gatekeeper.offline.audit.reader import find_log_files
from gatekeeper.offline.audit.verify import verify_log
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


def _schedstat(path: str) -> float:
    """CPU seconds a thread or process has run (``/proc/…/schedstat``, nanoseconds)."""
    try:
        with open(path) as file:
            return int(file.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def writer_cpu(log: DecisionLog) -> tuple[float, float]:
    """CPU seconds so far of the log's writer thread and of its writer process (0 if none)."""
    thread = log.writer._thread
    tid = thread.native_id if thread is not None else None
    own = _schedstat(f"/proc/self/task/{tid}/schedstat") if tid is not None else 0.0
    pid = getattr(log.writer.sealer, "pid", None)
    return own, _schedstat(f"/proc/{pid}/schedstat") if pid is not None else 0.0


def writes(log: DecisionLog) -> tuple[int, int]:
    """(batches written, fsyncs) of the log's file so far: counted by ``CountingSink`` in this
    process, or by the writer process (the batches sent to it, and its fsyncs)."""
    sealer = log.writer.sealer
    if isinstance(sealer, ProcessSealer):
        return sealer.batches, sealer.syncs
    return CountingSink.batches, CountingSink.syncs


def bench_serialise(n: int) -> tuple[float, float]:
    batch = events(n)
    return timed(lambda: [orjson.dumps(e) for e in batch])


def bench_seal(n: int) -> tuple[float, float]:
    batch, chain, mask = events(n), Chain(), masker()

    def run() -> None:
        rules = mask.batch_rules()  # once per batch, as the writer does
        for event in batch:
            mask_and_seal(chain, mask, event, rules)

    return timed(run)


def bench_verify(log: Path) -> tuple[int, float, float]:
    count = sum(1 for _ in log.open("rb"))
    keyring = Keyring(log.parent / "keys")
    return (count, *timed(lambda: verify_log(find_log_files([log]), keyring)))


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


@dataclass
class Figures:
    """One timed stretch, in seconds (and counts) for all its events."""

    wall: float
    #: This process's CPU (every thread: the event loop's and the log's writer thread).
    worker: float
    #: The event loop thread's own CPU (``time.thread_time``).
    loop: float
    #: The log's writer thread's CPU, and its writer process's (``/proc/…/schedstat``).
    thread: float
    process: float
    batches: float
    syncs: float
    #: The busy loop's iteration times (``bench_busy``).
    latencies: list[float] = field(default_factory=list)


class Meter:
    """The clocks of one timed stretch on the event loop thread (started when made)."""

    def __init__(self, log: DecisionLog | None) -> None:
        self.log = log
        self.start = self._read()

    def _read(self) -> tuple[float, ...]:
        thread, process = writer_cpu(self.log) if self.log is not None else (0.0, 0.0)
        batches, syncs = writes(self.log) if self.log is not None else (0, 0)
        now = (time.perf_counter(), time.process_time(), time.thread_time())
        return (*now, thread, process, batches, syncs)

    def stop(self) -> Figures:
        end = self._read()
        return Figures(*(b - a for a, b in zip(self.start, end, strict=True)))


Scenario = Callable[[DecisionLog | None, list[dict[str, Any]]], Awaitable[list[float] | None]]


def run_scenario(
    scenario: Scenario,
    n: int,
    sealer: str | None,
    directory: Path,
    signer: Signer,
    **options: Any,
) -> Figures:
    """``scenario`` over ``n`` events with a log sealing in its ``sealer`` (``None``: the same
    loop with no log). The log is started before timing (its writer process booted, the chain's
    start entry written) and closed after, so the figures are its steady state's."""
    batch = events(n)
    path = directory / f"{sealer}-{time.monotonic_ns()}.jsonl"

    async def run() -> Figures:
        log = None
        if sealer is not None:
            log = DecisionLog(
                CountingSink(path),
                signer=signer,
                masker=masker(),
                sealer=sealer,
                **{**LOG_OPTIONS, **options},
            )
            await log.prepare()
            log.record(events(1)[0])
            await log.flush()
        meter = Meter(log)
        latencies = await scenario(log, batch)
        figures = meter.stop()
        figures.latencies = latencies or []
        if log is not None:
            await log.aclose()
        return figures

    return asyncio.run(run())


async def burst(log: DecisionLog | None, batch: list[dict[str, Any]]) -> None:
    """Every event recorded at once: the writer takes them in large batches."""
    assert log is not None
    for event in batch:
        log.record(event)
    await log.flush()


def light(pause: float) -> Scenario:
    """One event at a time, each followed by ``asyncio.sleep(pause)``."""

    async def run(log: DecisionLog | None, batch: list[dict[str, Any]]) -> None:
        for event in batch:
            if log is not None:
                log.record(event)
            await asyncio.sleep(pause)
        if log is not None:
            await log.flush()

    return run


def durable(tasks: int) -> Scenario:
    """``tasks`` concurrent requests each awaiting ``record_durable`` (write + fsync)."""

    async def worker(log: DecisionLog, mine: list[dict[str, Any]]) -> None:
        for event in mine:
            await log.record_durable(event, 30.0)

    async def run(log: DecisionLog | None, batch: list[dict[str, Any]]) -> None:
        assert log is not None
        await asyncio.gather(*(worker(log, batch[i::tasks]) for i in range(tasks)))

    return run


def spin(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += i * i
    return total


def spin_rounds(micros: float) -> int:
    """The ``spin`` rounds that take about ``micros`` µs of CPU here."""
    rounds, took = 10_000, []
    for _ in range(5):
        started = time.thread_time()
        spin(rounds)
        took.append(time.thread_time() - started)
    return max(1, round(rounds * micros / 1e6 / statistics.median(took)))


def busy(rounds: int) -> Scenario:
    """The GIL's effect: a coroutine that works ``rounds`` of ``spin`` (pure Python, as a
    request's handling), records one event, yields (``sleep(0)``), and times each iteration,
    with the log's writer sealing beside it."""

    async def run(log: DecisionLog | None, batch: list[dict[str, Any]]) -> list[float]:
        latencies = []
        for event in batch:
            started = time.perf_counter()
            spin(rounds)
            if log is not None:
                log.record(event)
            await asyncio.sleep(0)
            latencies.append(time.perf_counter() - started)
        if log is not None:
            await log.flush()
        return latencies

    return run


class NoLog:
    """A decision log that writes nothing: what the stack costs without its log."""

    def record(self, event: dict[str, Any]) -> None:
        return None

    async def flush(self) -> None:
        return None


async def _stack(
    storage: str, directory: Path, rounds: int, per_round: int, sealer_kind: str
) -> None:
    settings = bench_settings(directory, storage, audit={"sealer": sealer_kind})
    app, template = protected_app(settings), http_scope()
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
        sealer = log.writer.sealer
        process = isinstance(sealer, ProcessSealer)
        cpu: dict[str, list[float]] = {"log": [], "no log": []}
        loop: dict[str, list[float]] = {"log": [], "no log": []}
        writer: list[tuple[float, float]] = []
        events_written = batches = 0
        for r in range(rounds):
            for name in ("log", "no log") if r % 2 == 0 else ("no log", "log"):
                gk.decision_log = log if name == "log" else off
                written, writes[0] = log.written, 0
                sent = sealer.batches if isinstance(sealer, ProcessSealer) else 0
                thread_cpu, process_cpu = writer_cpu(log)
                statuses = []
                started, loop_started = time.process_time(), time.thread_time()
                for _ in range(per_round):
                    statuses.append(await call(app, template))
                await gk.decision_log.flush()
                loop[name].append((time.thread_time() - loop_started) / per_round * 1e6)
                used = time.process_time() - started
                if name == "log":
                    events = max(1, log.written - written)
                    after = writer_cpu(log)
                    thread_used, process_used = after[0] - thread_cpu, after[1] - process_cpu
                    used += process_used  # the writer process's CPU is the request's too
                    writer.append((thread_used / events * 1e6, process_used / events * 1e6))
                    events_written += log.written - written
                    if isinstance(sealer, ProcessSealer):
                        batches += sealer.batches - sent
                    else:
                        batches += writes[0]
                cpu[name].append(used / per_round * 1e6)
                for status in statuses:
                    answers[name].count(status)
        gk.decision_log = log
    if refused := report_answers(answers, "--stack: warm-up and every timed request"):
        print(f"\nwhole stack in-process ({storage}): " + "; ".join(
            f"{name} {answers[name].refusal()}" for name in refused))  # fmt: skip
        exit_if_refused("bench.decision_log", refused)
    size = max(len(line) for line in (directory / "log" / "decisions.jsonl").open("rb"))
    on, none = statistics.median(cpu["log"]), statistics.median(cpu["no log"])
    loop_on, loop_none = statistics.median(loop["log"]), statistics.median(loop["no log"])
    print(
        f"\nwhole stack in-process ({storage}, sealer {'process' if process else 'thread'}, "
        f"events up to {size:,} bytes; medians of {rounds} interleaved rounds of {per_round} "
        f"requests): CPU per request {on:,.0f} µs with the log (writer process included), "
        f"{none:,.0f} µs with a no-op log: the log costs {on - none:+,.0f} µs per request; "
        f"the event loop thread's own CPU per request {loop_on:,.0f} µs with the log, "
        f"{loop_none:,.0f} µs without ({loop_on - loop_none:+,.0f} µs)"
    )
    if writer:
        print(
            f"  the writer thread: {statistics.median(w[0] for w in writer):.0f} µs of CPU per "
            f"event; the writer process: {statistics.median(w[1] for w in writer):.0f} µs; "
            f"{events_written / max(1, batches):.1f} events per write"
        )


def bench_stack(storage: str, rounds: int, per_round: int, sealer: str) -> None:
    """The whole stack in-process (``bench.profile``'s), with its log and with a no-op one."""
    from bench._common import redis_server

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dl-")))
        url = stack.enter_context(redis_server()) if storage == "redis" else "memory://"
        asyncio.run(_stack(url, directory, rounds, per_round, sealer))


def per_event(rows: list[tuple[int, Figures]], pick: Callable[[Figures], float]) -> float:
    """The median over rounds of ``pick``'s figure per event."""
    return statistics.median(pick(f) / n for n, f in rows)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="burst events per round")
    parser.add_argument("--light-events", type=int, help="light-load events (default events/20)")
    parser.add_argument("--pause", type=float, default=0.0005, help="light-load pause, s")
    parser.add_argument("--linger", type=float, help="the log's linger_seconds (default: its own)")
    parser.add_argument("--durable-events", type=int, default=400)
    parser.add_argument("--busy-events", type=int, default=2_000, help="busy-loop iterations")
    parser.add_argument(
        "--busy-work", type=float, default=200.0, help="µs of CPU per busy-loop iteration"
    )
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
    parser.add_argument(
        "--sealer",
        choices=["both", "thread", "process"],
        default="both",
        help="where the log seals (audit.sealer): its writer thread, a writer process, or both "
        "side by side (default)",
    )
    parser.add_argument("--stack-rounds", type=int, default=8)
    parser.add_argument("--stack-requests", type=int, default=1000, help="per round")
    args = parser.parse_args()
    n, nd, nb = args.events, args.durable_events, args.busy_events
    nl = args.light_events or max(1, n // 20)
    sealers = ["thread", "process"] if args.sealer == "both" else [args.sealer]
    if args.event == "stack":
        STACK_EVENT.append(capture_stack_event())
    if args.linger is not None:
        LOG_OPTIONS["linger_seconds"] = args.linger
    work = spin_rounds(args.busy_work)
    scenarios: list[tuple[str, int, Scenario, dict[str, Any], bool]] = [
        # name, events, scenario, log options, whether the loop alone is timed too
        ("burst (all recorded at once)", n, burst, {"queue_size": n + 1}, False),
        ("light load, sleep(0)", nl, light(0.0), {}, True),
        (f"light load, {args.pause * 1e3:g} ms pause", nl, light(args.pause), {}, True),
        *((f"durable, {t} tasks", nd, durable(t), {}, False) for t in (1, 16, 256)),
        (f"busy loop, {args.busy_work:g} µs/iteration", nb, busy(work), {}, True),
    ]
    #: (scenario, sealer or "alone") -> rounds of (events, figures)
    rows: dict[tuple[str, str], list[tuple[int, Figures]]] = {}
    #: name -> rounds of (events/s, µs of CPU per event)
    plain: dict[str, list[tuple[float, float]]] = {}

    def add(name: str, count: int, wall: float, cpu: float) -> None:
        plain.setdefault(name, []).append((count / wall, cpu / count * 1e6))

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        signer = Signer.from_files(directory / "keys" / "k.pem", directory / "keys")
        sample = orjson.dumps(events(1)[0])
        print(
            f"event size: {len(sample)} bytes (orjson); per round: {n} events in a burst, {nl} "
            f"at light load, {nd} durable, {nb} busy-loop iterations; sealers: "
            + ", ".join(sealers)
        )
        print("Non-2xx answers: none possible, the log's figures send no HTTP request"
              + (" (the stack's event: see above)" if STACK_EVENT else ""))  # fmt: skip
        for r in range(args.rounds):
            add("serialise only (orjson)", n, *bench_serialise(n))
            add("seal (mask+canonical+sha256)", n, *bench_seal(n))
            for name, count, scenario, options, alone in scenarios:
                order = sealers if r % 2 == 0 else sealers[::-1]
                for sealer in [*order, "alone"] if alone else order:
                    kind = None if sealer == "alone" else sealer
                    figures = run_scenario(scenario, count, kind, directory, signer, **options)
                    rows.setdefault((name, sealer), []).append((count, figures))
            chains = sorted(directory.glob(f"{sealers[0]}-*.jsonl"), key=lambda p: p.stat().st_size)
            add("verify (audit verify)", *bench_verify(chains[-1]))

    if not rows:  # --rounds 0: only the whole stack
        for sealer in sealers if args.stack else []:
            bench_stack(args.stack, args.stack_rounds, args.stack_requests, sealer)
        return

    print(f"\nwithout a log's writer (medians of {args.rounds} rounds)  events/s  CPU µs/event")
    for name, results in plain.items():
        rate = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        print(f"  {name:<50} {rate:>9,.0f} {cpu:>12.1f}")

    print(
        f"\nside by side (medians of {args.rounds} interleaved rounds). CPU µs per event: loop = "
        "the event loop thread's own; worker = the whole worker process (the loop and the log's "
        "writer thread: what holds the one interpreter lock); total = worker + the writer "
        "process. Light load and the busy loop: less the same loop without a log."
    )
    head = f"{'events/s':>9} {'loop':>6} {'worker':>7} {'total':>7} {'ev/batch':>8} {'fsync/ev':>8}"
    print(f"{'':<34}" + "".join(f" | {s:<{len(head)}}" for s in sealers))
    print(f"{'':<34}" + f" | {head}" * len(sealers))
    for name, _, _, _, alone in scenarios:
        line = f"{name:<34}"
        for sealer in sealers:
            got = rows[(name, sealer)]
            base = rows[(name, "alone")] if alone else None
            loop = per_event(got, lambda f: f.loop)
            worker = per_event(got, lambda f: f.worker)
            if base is not None:
                loop -= per_event(base, lambda f: f.loop)
                worker -= per_event(base, lambda f: f.worker)
            total = worker + per_event(got, lambda f: f.process)
            rate = statistics.median(c / f.wall for c, f in got)
            batch = statistics.median(c / max(1.0, f.batches) for c, f in got)
            syncs = f"{per_event(got, lambda f: f.syncs):.3f}" if name.startswith("durable") else ""
            line += (
                f" | {rate:>9,.0f} {loop * 1e6:>6.1f} {worker * 1e6:>7.1f} {total * 1e6:>7.1f} "
                f"{batch:>8.1f} {syncs:>8}"
            )
        print(line)

    name = scenarios[-1][0]
    print(
        f"\nthe interpreter lock's effect ({name}: {nb} iterations, each {work:,} rounds of "
        "pure-Python work, one event recorded, sleep(0)); iteration time in µs, medians of "
        "the rounds' quantiles:"
    )
    for sealer in [*sealers, "alone"]:
        got = rows[(name, sealer)]
        p50, p99, top = (
            statistics.median(quantile(f.latencies, q) * 1e6 for _, f in got)
            for q in (0.5, 0.99, 1.0)
        )
        extra = statistics.median(f.wall / c for c, f in got) * 1e6
        label = "no log" if sealer == "alone" else f"sealer {sealer}"
        print(
            f"  {label:<15} p50 {p50:7.0f}   p99 {p99:7.0f}   max {top:8.0f}   "
            f"wall per iteration (with the final flush) {extra:7.0f}"
        )

    for sealer in sealers if args.stack else []:
        bench_stack(args.stack, args.stack_rounds, args.stack_requests, sealer)


if __name__ == "__main__":
    main()
