"""Policy evaluation, side by side in one run: `python -m bench.policy_eval`.

- ``embedded eval``     regorus in-process: the input document as the engine hands it to
                        regorus (the paths the pack reads, as JSON), set and evaluated (what
                        "evaluating the pack" costs), with the evaluator gatekeeper uses
                        by default for the pack: regorus's compiled VM (docs/policy-authoring.md,
                        "Evaluators");
- ``... whole input``   the same, handing regorus the whole input document instead of the
                        paths the pack reads (what the projection saves);
- ``interpreter eval``  the same as ``embedded eval`` with ``policy.evaluator = "interpreter"``
                        (regorus's interpreter, what the engine falls back to);
- ``embedded verdict``  what the middleware pays per request: input to JSON, evaluation, and
                        validation of the decision against the ``Decision`` contract;
- ``opa verdict``       the OPA engine: a real ``opa run --server`` on loopback, the pack pushed
                        to it, one decision per HTTP round trip through opa-python-client's
                        async client (pooled keep-alive connection), validated the same way;
- ``--compare DIR``     also ``embedded eval`` of another pack (e.g. an older revision), to
                        measure a Rego change;
- ``--by-rule``         where the interpreter's time goes: each module's top rules (``refusals``,
                        ``applicable``, ``exposure``, ``obligations``) evaluated alone, less the
                        cost of setting the input.

Inputs are four realistic documents (an allowed free user, an allowed pro user, a refused
unverified user from a restricted country, a client of unknown location), rotated, in two sets:
**without signals** (``input.signals.available`` false: the distillation module grades nothing)
and **with signals** (the signal stage ran, as in gatekeeper's default configuration: benign
usage counts, a small account cluster, a low CoT score; every piece of evidence is evaluated).
Figures are medians of interleaved rounds, so a busy machine slows every contender alike.
Only ``opa verdict`` sends HTTP requests, and an OPA answer other than 200 raises in
``OpaEngine`` (the run stops with it), so every timed round trip was a 200 (``Non-2xx
answers``); the other contenders send none.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench._common import free_port
from gatekeeper.contract import Input
from gatekeeper.policy import EmbeddedEngine, OpaEngine, load_policy

ROOT = Path(__file__).resolve().parent.parent


def find_opa() -> str | None:
    """``opa`` on PATH, else the one ``make tools`` builds into .tools/bin."""
    local = ROOT / ".tools" / "bin" / "opa"
    return shutil.which("opa") or (str(local) if local.is_file() else None)


@contextmanager
def opa_server(opa: str) -> Iterator[str]:
    """``opa run --server`` on a free loopback port; yields its URL."""
    port = free_port()
    args = [opa, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


#: What the signal stage reports for ordinary traffic (``--signals`` inputs).
BENIGN_SIGNALS: dict[str, Any] = {
    "available": True,
    "cot_elicitation": 0.1,
    "template_repetition": 0.05,
    "subject": {"requests": {"1h": 40, "24h": 300}, "tokens": {"1h": 9000},
                "reasoning_share": 0.3, "template_count": 1},
    "cluster": {"id": "c-1", "size": 2, "requests": {"1h": 80}, "template_count": 1},
}  # fmt: skip


def inputs(signals: bool = False) -> list[dict[str, Any]]:
    def doc(tier: str, kyc: str, country: str | None, ip: str) -> dict[str, Any]:
        return Input.model_validate(
            {
                "subject": {"id": f"user-{tier}", "org": "org-1", "tier": tier, "kyc_level": kyc},
                "network": {"client_ip": ip, "country": country, "asn": 64500},
                "request": {
                    "method": "POST",
                    "path": "/v1/chat/completions",
                    "dialect": "openai_chat",
                    "model": "demo-reasoner",
                    "stream": True,
                    "reasoning_requested": True,
                    "max_tokens": 512,
                    "estimated_tokens": 700,
                    "user_agent": "OpenAI/Python 1.50.0",
                    "prompt_features": {"messages": 3, "chars": 800},
                },
                "signals": BENIGN_SIGNALS if signals else {},
                "time": {
                    "unix_ns": 0,
                    "rfc3339": "2026-01-01T00:00:00Z",
                    "weekday": 3,
                    "hour_utc": 0,
                },
            }
        ).model_dump(mode="json")

    return [
        doc("free", "email", "US", "203.0.113.7"),
        doc("pro", "government_id", "DE", "192.0.2.7"),
        doc("free", "none", "KP", "198.51.100.7"),
        doc("enterprise", "business", None, "100.64.0.7"),
    ]


async def _timed_async(call: Callable[[Any], Awaitable[Any]], arg: Any, n: int) -> list[int]:
    out = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await call(arg)
        out.append(time.perf_counter_ns() - started)
    return out


def _timed(call: Callable[[Any], Any], arg: Any, n: int) -> list[int]:
    out = []
    for _ in range(n):
        started = time.perf_counter_ns()
        call(arg)
        out.append(time.perf_counter_ns() - started)
    return out


async def run(rounds: int, per_round: int, compare: Path | None) -> None:
    source = load_policy(ROOT / "policies")
    sets = {"": inputs(), ", signals": inputs(signals=True)}
    docs = sets
    embedded = EmbeddedEngine(source)
    interpreter = EmbeddedEngine(source, evaluator="interpreter")
    other = EmbeddedEngine(load_policy(compare), check=False) if compare else None
    samples: dict[str, list[int]] = {}
    opa_bin = find_opa()
    opa: OpaEngine | None = None
    server = opa_server(opa_bin) if opa_bin else None
    if server is not None:
        opa = OpaEngine(server.__enter__(), source=source, pool_size=4)
        await opa.start()
    else:
        print("opa not found (make tools builds it): OPA figures are skipped")
    try:
        for i in range(rounds):
            for kind, pairs in docs.items():
                doc = pairs[i % len(pairs)]
                add = samples.setdefault
                add(f"embedded eval{kind}", []).extend(
                    _timed(embedded.evaluate_doc_json, doc, per_round)
                )
                add(f"embedded verdict{kind}", []).extend(
                    await _timed_async(embedded.verdict, doc, per_round)
                )
                add(f"embedded eval, whole input{kind}", []).extend(
                    _timed(
                        lambda d: embedded.evaluate_json(orjson.dumps(d).decode()), doc, per_round
                    )
                )
                add(f"interpreter eval{kind}", []).extend(
                    _timed(interpreter.evaluate_doc_json, doc, per_round)
                )
                if other is not None:
                    add(f"embedded eval{kind} ({compare})", []).extend(
                        _timed(other.evaluate_doc_json, doc, per_round)
                    )
                if opa is not None:
                    add(f"opa verdict{kind}", []).extend(
                        await _timed_async(opa.verdict, doc, per_round // 4 or 1)
                    )
    finally:
        if opa is not None:
            await opa.aclose()
        if server is not None:
            server.__exit__(None, None, None)

    medians = {name: statistics.median(values) / 1000 for name, values in samples.items()}
    print(f"policy revision {source.revision}, {len(source.policy_modules)} modules, "
          f"embedded evaluator: {embedded.status()['evaluator']}")  # fmt: skip
    trips = sum(len(v) for name, v in samples.items() if name.startswith("opa verdict"))
    print(
        f"Non-2xx answers: opa verdict 0 of {trips:,} round trips (OpaEngine raises on any "
        "other status, which stops the run); the other contenders send no HTTP request"
    )
    print(f"{'contender':<48}{'median µs':>12}{'samples':>10}")
    for name, median in medians.items():
        print(f"{name:<48}{median:>12.1f}{len(samples[name]):>10}")
    for kind in docs:
        base = medians[f"embedded verdict{kind}"]
        if f"opa verdict{kind}" in medians:
            ratio = medians[f"opa verdict{kind}"] / base
            print(f"opa verdict / embedded verdict{kind}: {ratio:.1f}x (target: >= 10x)")
        ratio = medians[f"interpreter eval{kind}"] / medians[f"embedded eval{kind}"]
        print(f"interpreter eval / embedded eval{kind}: {ratio:.1f}x")
        if other is not None:
            ratio = medians[f"embedded eval{kind} ({compare})"] / medians[f"embedded eval{kind}"]
            print(f"embedded eval{kind}, {compare} / current pack: {ratio:.2f}x")


def by_rule(rounds: int, per_round: int) -> None:
    """Median cost of each module's top rules evaluated alone, less setting the input."""
    import re

    from gatekeeper.policy.embedded import compile_source

    source = load_policy(ROOT / "policies")
    engine = compile_source(source, tests=False)
    engine.add_policy("zz_bench.rego", "package zz_bench\n\nnothing := 1\n")
    rules = ["data.gatekeeper.decision", "data.zz_bench.nothing"]
    for text in source.policy_modules.values():
        package = re.search(r"^package\s+([\w.]+)", text, re.M)
        for name in ("refusals", "applicable", "exposure", "obligations"):
            if package and re.search(rf"^{name}\b", text, re.M):
                rules.append(f"data.{package.group(1)}.{name}")
    raw = [orjson.dumps(d).decode() for d in inputs()]
    samples: dict[str, list[int]] = {rule: [] for rule in rules}
    for i in range(rounds):
        for rule in rules:
            for _ in range(per_round):
                started = time.perf_counter_ns()
                engine.set_input_json(raw[i % len(raw)])
                engine.eval_rule_as_json(rule)
                samples[rule].append(time.perf_counter_ns() - started)
    floor = statistics.median(samples.pop("data.zz_bench.nothing")) / 1000
    print(f"setting the input and evaluating a constant: {floor:.1f} µs; above that:")
    for rule, values in samples.items():
        print(f"  {rule:<46}{statistics.median(values) / 1000 - floor:>8.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="interleaved rounds")
    parser.add_argument("--per-round", type=int, default=40, help="evaluations per round")
    parser.add_argument("--compare", type=Path, default=None, help="another pack to time")
    parser.add_argument("--by-rule", action="store_true", help="time each module's top rules")
    args = parser.parse_args()
    if args.by_rule:
        by_rule(args.rounds // 4 or 1, args.per_round)
        return
    asyncio.run(run(args.rounds, args.per_round, args.compare))


if __name__ == "__main__":
    main()
