"""Running a policy repo's Rego unit tests (``test_*`` rules), reported like ``opa test``.

One regorus engine is compiled per run and every test is evaluated on it (a test's ``with``
modifiers scope its own input and data, so tests do not leak into each other). Outcomes follow
``opa test``: PASS when the rule is ``true``, FAIL when it is undefined or anything else, ERROR
when evaluation raises, SKIPPED for ``todo_test_*``. Reports: OPA's pretty format (``file:row:``
before each result shown), its JSON format (``--format json``), and, with a benchmark, Go's
benchmark lines (``--bench``). Coverage is in ``gatekeeper.policy.coverage``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from gatekeeper.errors import PolicyLoadError
from gatekeeper.policy.compile import compile_source
from gatekeeper.policy.repo import PolicySource

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^((?:todo_)?test_\w+)\b", re.MULTILINE)
_UNDEFINED = '"<undefined>"'


class RegoTest(NamedTuple):
    """Where one test rule is: its module, package (``data.…``), name and first line."""

    file: str
    package: str
    rule: str
    row: int


@dataclass(frozen=True)
class Benchmark:
    """``n`` evaluations of one test in ``total_ns`` nanoseconds (``opa test --bench``)."""

    n: int
    total_ns: int

    @property
    def ns_per_op(self) -> float:
        return self.total_ns / self.n if self.n else 0.0


@dataclass(frozen=True)
class TestResult:
    """One test rule's outcome: PASS, FAIL, ERROR or SKIPPED."""

    __test__ = False  # not a pytest test class

    package: str
    name: str
    file: str
    outcome: str
    duration_ns: int
    message: str = ""
    #: The line the rule starts on (0: unknown).
    row: int = 0
    benchmark: Benchmark | None = None

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.name}"

    @property
    def location(self) -> str:
        """``file:row`` (``file`` alone when the row is unknown)."""
        return f"{self.file}:{self.row}" if self.row else self.file

    def as_json(self) -> dict[str, Any]:
        """This result as ``opa test --format json`` writes it (``fail``/``skip`` only when
        true, ``duration`` in nanoseconds)."""
        out: dict[str, Any] = {
            "location": {"file": self.file, "row": self.row, "col": 1} if self.row else None,
            "package": self.package,
            "name": self.name,
        }
        if self.outcome == "FAIL":
            out["fail"] = True
        elif self.outcome == "SKIPPED":
            out["skip"] = True
        elif self.outcome == "ERROR":
            out["error"] = {"code": "eval_error", "message": self.message}
        out["duration"] = self.duration_ns
        if self.benchmark is not None:
            out["benchmark_result"] = {"N": self.benchmark.n, "T": self.benchmark.total_ns}
        return out


def discover_tests(source: PolicySource) -> list[RegoTest]:
    """Every test rule of ``source``, in file order."""
    found: list[RegoTest] = []
    for name, text in sorted(source.modules.items()):
        package = _PACKAGE.search(text)
        if package is None:
            continue
        seen: set[str] = set()
        for match in _TEST_RULE.finditer(text):
            rule = match.group(1)
            if rule not in seen:
                seen.add(rule)
                row = text.count("\n", 0, match.start()) + 1
                found.append(RegoTest(name, "data." + package.group(1), rule, row))
    return found


def run_tests(
    source: PolicySource,
    pattern: str | None = None,
    *,
    engine: Any = None,
    bench_seconds: float = 0.0,
) -> list[TestResult]:
    """Evaluate every test rule of ``source`` whose full name matches ``pattern`` (a regular
    expression, searched), on ``engine`` (one compiled from ``source`` with its tests, on this
    thread; compiled here if not given). With ``bench_seconds``, each passing test is then
    evaluated again for about that long and its ``benchmark`` says how fast."""
    if engine is None:
        engine = compile_source(source)
    selector = re.compile(pattern) if pattern else None
    results: list[TestResult] = []
    engine.set_input_json("{}")
    for test in discover_tests(source):
        full = f"{test.package}.{test.rule}"
        if selector and not selector.search(full):
            continue
        if test.rule.startswith("todo_"):
            results.append(
                TestResult(test.package, test.rule, test.file, "SKIPPED", 0, "", test.row)
            )
            continue
        started = time.perf_counter_ns()
        try:
            value = engine.eval_rule_as_json(full).strip()
        except Exception as exc:
            elapsed = time.perf_counter_ns() - started
            results.append(
                TestResult(
                    test.package, test.rule, test.file, "ERROR", elapsed, _error(exc), test.row
                )
            )
            continue
        elapsed = time.perf_counter_ns() - started
        outcome = "PASS" if value == "true" else "FAIL"
        benchmark = (
            _bench(engine, full, bench_seconds) if bench_seconds and outcome == "PASS" else None
        )
        results.append(
            TestResult(
                test.package, test.rule, test.file, outcome, elapsed, "", test.row, benchmark
            )
        )
    return results


def _error(exc: BaseException) -> str:
    """regorus's caret-annotated error as OPA prints one: ``file:row: message``."""
    text = str(exc)
    where = re.search(r"-->\s*(\S+?):(\d+):\d+", text)
    what = re.search(r"^error:\s*(.+)$", text, re.MULTILINE)
    message = what.group(1).strip() if what else " ".join(text.split()[:30]) or repr(exc)
    return f"{where.group(1)}:{where.group(2)}: {message}" if where else message


def _bench(engine: Any, rule: str, seconds: float) -> Benchmark:
    """Go's way: run 1, 10, 100… times until a round lasts ``seconds``; the last round counts."""
    n = 1
    while True:
        started = time.perf_counter_ns()
        for _ in range(n):
            engine.eval_rule_as_json(rule)
        total = time.perf_counter_ns() - started
        if total >= seconds * 1e9 or n >= 1_000_000:
            return Benchmark(n, total)
        # Aim for the target from this round's speed, growing at most 100-fold.
        per_op = max(total / n, 1)
        n = int(min(max(seconds * 1e9 / per_op * 1.2, n + 1), n * 100))


def format_results(results: list[TestResult], *, verbose: bool = False) -> str:
    """OPA's pretty format: each non-passing result (all with ``verbose``) after its
    ``file:row:``, a rule, then the totals (a benchmark line for each benchmarked test)."""
    lines: list[str] = []
    for r in results:
        if r.benchmark is not None:
            lines.append(format_benchmark(r))
            continue
        if r.outcome == "PASS" and not verbose:
            continue
        lines.append(f"{r.location}:")
        duration = "" if r.outcome == "SKIPPED" else f" ({_go_duration(r.duration_ns)})"
        lines.append(f"{r.full_name}: {r.outcome}{duration}")
        if r.message:
            lines.append(f"  {r.message}")
    lines.append("-" * 80)
    total = len(results)
    for outcome in ("PASS", "FAIL", "SKIPPED", "ERROR"):
        count = sum(1 for r in results if r.outcome == outcome)
        if count:
            lines.append(f"{outcome}: {count}/{total}")
    return "\n".join(lines)


def format_benchmark(result: TestResult) -> str:
    """A Go benchmark line, as ``opa test --bench`` prints it: name, runs, time per run."""
    assert result.benchmark is not None
    b = result.benchmark
    return f"{result.full_name}\t{b.n:>8}\t{b.ns_per_op:>10.0f} ns/op"


def format_json(results: list[TestResult]) -> str:
    """``opa test --format json``: an array of result objects."""
    return json.dumps([r.as_json() for r in results], indent=2, ensure_ascii=False)


def _go_duration(ns: int) -> str:
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.3f}ms"
    return f"{ns / 1_000_000_000:.3f}s"


def assert_tests_pass(source: PolicySource) -> list[TestResult]:
    """Run the tests; raise ``PolicyLoadError`` naming the failures (used before a reload)."""
    results = run_tests(source)
    bad = [r for r in results if r.outcome in {"FAIL", "ERROR"}]
    if bad:
        names = ", ".join(r.full_name for r in bad[:5])
        raise PolicyLoadError(f"{len(bad)} policy test(s) failed: {names}")
    return results
