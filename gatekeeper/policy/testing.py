"""Running a policy repo's Rego unit tests (``test_*`` rules), reported like ``opa test``."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from gatekeeper.errors import PolicyLoadError
from gatekeeper.policy.embedded import compile_source
from gatekeeper.policy.repo import PolicySource

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^((?:todo_)?test_\w+)\b", re.MULTILINE)


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

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.name}"


def discover_tests(source: PolicySource) -> list[tuple[str, str, str]]:
    """``(file, package, rule)`` for every test rule, in file order."""
    found: list[tuple[str, str, str]] = []
    for name, text in sorted(source.modules.items()):
        package = _PACKAGE.search(text)
        if package is None:
            continue
        seen: set[str] = set()
        for match in _TEST_RULE.finditer(text):
            rule = match.group(1)
            if rule not in seen:
                seen.add(rule)
                found.append((name, "data." + package.group(1), rule))
    return found


def run_tests(
    source: PolicySource, pattern: str | None = None, *, engine: Any = None
) -> list[TestResult]:
    """Evaluate every test rule of ``source`` with the embedded engine (``engine``: one already
    compiled from ``source`` with its tests, on this thread)."""
    if engine is None:
        engine = compile_source(source)
    selector = re.compile(pattern) if pattern else None
    results: list[TestResult] = []
    for file, package, rule in discover_tests(source):
        full = f"{package}.{rule}"
        if selector and not selector.search(full):
            continue
        if rule.startswith("todo_"):
            results.append(TestResult(package, rule, file, "SKIPPED", 0))
            continue
        started = time.perf_counter_ns()
        try:
            engine.set_input_json("{}")
            value = engine.eval_rule_as_json(full).strip()
        except Exception as exc:
            message = " ".join(line.strip() for line in str(exc).strip().splitlines()[:4]) or repr(
                exc
            )
            results.append(
                TestResult(package, rule, file, "ERROR", time.perf_counter_ns() - started, message)
            )
            continue
        outcome = "PASS" if value == "true" else "FAIL"
        results.append(TestResult(package, rule, file, outcome, time.perf_counter_ns() - started))
    return results


def format_results(results: list[TestResult], *, verbose: bool = False) -> str:
    """OPA's pretty format: non-passing results (all with ``verbose``), a rule, then totals."""
    lines: list[str] = []
    for r in results:
        if r.outcome == "PASS" and not verbose:
            continue
        duration = "" if r.outcome == "SKIPPED" else f" ({_go_duration(r.duration_ns)})"
        lines.append(f"{r.full_name}: {r.outcome}{duration}")
        if r.message:
            lines.append(f"  {r.file}: {r.message}")
    lines.append("-" * 80)
    total = len(results)
    for outcome in ("PASS", "FAIL", "SKIPPED", "ERROR"):
        count = sum(1 for r in results if r.outcome == outcome)
        if count:
            lines.append(f"{outcome}: {count}/{total}")
    return "\n".join(lines)


def _go_duration(ns: int) -> str:
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3f}µs"
    return f"{ns / 1_000_000:.3f}ms"


def assert_tests_pass(source: PolicySource) -> list[TestResult]:
    """Run the tests; raise ``PolicyLoadError`` naming the failures (used before a reload)."""
    results = run_tests(source)
    bad = [r for r in results if r.outcome in {"FAIL", "ERROR"}]
    if bad:
        names = ", ".join(r.full_name for r in bad[:5])
        raise PolicyLoadError(f"{len(bad)} policy test(s) failed: {names}")
    return results
