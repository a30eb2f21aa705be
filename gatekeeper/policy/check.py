"""Checking a policy revision before it is used: ``gatekeeper policy check`` and hot reload.

A revision passes when it compiles, keeps its packages and data under the manifest's roots,
declares the decision rule's package, passes its own Rego unit tests, and yields a valid
``Decision`` that matches the expectation of every conformance case (or, for a repo without
cases, a valid decision for a built-in sample input). Everything here runs with an embedded
engine created on the calling thread, so it can run on a worker thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from gatekeeper.errors import PolicyLoadError
from gatekeeper.policy.compile import compile_source, first_lines
from gatekeeper.policy.conformance import Case, CaseResult, judge, parse_cases, sample_input
from gatekeeper.policy.embedded import Prepared, check_rule_exists, prepare_revision
from gatekeeper.policy.engine import UNDEFINED
from gatekeeper.policy.repo import PolicySource
from gatekeeper.policy.testing import TestResult, run_tests

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
#: A reason code written in a module (``"code": "kyc_insufficient"``).
_CODE = re.compile(r'"code":\s*"(\w+)"')


@dataclass
class CheckReport:
    """The outcome of checking one revision."""

    revision: str
    tests: list[TestResult] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Rules no conformance case reaches, and reason codes no case's decision gives (only
    #: when asked: ``check_source(..., coverage=True)``). Reported, not problems.
    uncovered: list[str] = field(default_factory=list)
    #: Its VM plan and input paths (``policy.evaluator`` "auto"), for the engine to reuse.
    prepared: Prepared | None = None

    @property
    def evaluator(self) -> str:
        """How the embedded engine would evaluate it: "vm", or "interpreter (why not)"."""
        if self.prepared is None:
            return ""
        plan = self.prepared.plan
        return "vm" if plan.program is not None else f"interpreter ({plan.reason})"

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise ``PolicyLoadError`` naming the first problems, if there are any."""
        if self.problems:
            more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
            raise PolicyLoadError(
                f"revision {self.revision} rejected: " + "; ".join(self.problems[:3]) + more
            )

    def format(self) -> str:
        """A human-readable summary, problems first."""
        lines = [f"revision {self.revision}"]
        passed = sum(1 for t in self.tests if t.outcome == "PASS")
        lines.append(f"  rego tests: {passed}/{len(self.tests)} passed")
        good = sum(1 for c in self.cases if c.ok)
        lines.append(f"  decision cases: {good}/{len(self.cases)} as expected")
        if self.evaluator:
            lines.append(f"  embedded evaluator: {self.evaluator}")
        lines.extend(f"  not covered by a case: {u}" for u in self.uncovered)
        lines.extend(f"  problem: {p}" for p in self.problems)
        lines.append("OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)")
        return "\n".join(lines)


def check_source(
    source: PolicySource,
    decision_rule: str = "data.gatekeeper.decision",
    *,
    run_tests: bool = True,
    coverage: bool = False,
) -> CheckReport:
    """Check ``source`` (see the module docstring); never raises for a policy problem. With
    ``coverage``, also list what the conformance cases leave untried (``uncovered``)."""
    report = CheckReport(source.revision)
    try:
        engine = compile_source(source)
    except PolicyLoadError as exc:
        report.problems.append(f"does not compile: {exc}")
        return report
    report.problems.extend(root_violations(source))
    try:
        check_rule_exists(engine, decision_rule)
    except PolicyLoadError as exc:
        report.problems.append(str(exc))
        return report
    if run_tests:
        report.tests = run_tests_safely(source, engine, report)
    try:
        cases = parse_cases(source.cases)
    except PolicyLoadError as exc:
        report.problems.append(str(exc))
        cases = []
    if not cases:
        cases = [Case("sample-input", "decision", sample_input(), {"version": 1})]
    for case in cases:
        try:
            value = _evaluate(engine, decision_rule, case.input)
        except PolicyLoadError as exc:
            result = CaseResult(case, UNDEFINED, source.revision, error=str(exc))
        else:
            result = judge(case, value, source.revision)
        report.cases.append(result)
        if not result.ok:
            report.problems.append(result.describe())
    report.prepared = prepare_revision(source, decision_rule, "auto", engine)
    if coverage:
        report.uncovered = uncovered_by_cases(source, decision_rule, cases)
    return report


def uncovered_by_cases(source: PolicySource, decision_rule: str, cases: list[Case]) -> list[str]:
    """Rules of the policy modules that no case's evaluation reaches, and reason codes written
    in them that no case's decision carries: what a new rule without a case looks like."""
    from gatekeeper.policy.coverage import coverage_report

    engine = compile_source(source, tests=False, coverage=True)
    codes_seen: set[str] = set()
    for case in cases:
        try:
            value = _evaluate(engine, decision_rule, case.input)
        except PolicyLoadError:
            continue
        if isinstance(value, dict):
            codes_seen.update(
                str(r.get("code")) for r in value.get("reasons") or [] if isinstance(r, dict)
            )
    out: list[str] = []
    report = coverage_report(engine, source.policy_modules)
    for name, entry in report["files"].items():
        package = _PACKAGE.search(source.modules.get(name, ""))
        prefix = package.group(1).removeprefix("gatekeeper.") + "." if package else ""
        out.extend(
            f"rule {prefix}{r['name']} ({name}:{r['row']})"
            for r in entry.get("not_covered_rules", [])
        )
    for name, text in sorted(source.policy_modules.items()):
        for match in _CODE.finditer(text):
            if match.group(1) not in codes_seen:
                row = text.count("\n", 0, match.start()) + 1
                out.append(f"reason code {match.group(1)} ({name}:{row})")
    return out


def run_tests_safely(source: PolicySource, engine: Any, report: CheckReport) -> list[TestResult]:
    results = run_tests(source, engine=engine)
    bad = [r for r in results if r.outcome in {"FAIL", "ERROR"}]
    if bad:
        names = ", ".join(r.full_name for r in bad[:5])
        report.problems.append(f"{len(bad)} Rego test(s) failed: {names}")
    return results


def _evaluate(engine: Any, decision_rule: str, input_doc: dict[str, Any]) -> Any:
    try:
        engine.set_input_json(orjson.dumps(input_doc).decode())
        raw = engine.eval_rule_as_json(decision_rule)
    except Exception as exc:
        raise PolicyLoadError(f"evaluation failed: {first_lines(exc, 3)}") from exc
    return UNDEFINED if raw.strip() == '"<undefined>"' else orjson.loads(raw)


def root_violations(source: PolicySource) -> list[str]:
    """Packages and data outside the manifest's ``roots`` (OPA refuses such bundles)."""
    roots = source.manifest.get("roots")
    if not roots:
        return []
    prefixes = [str(r).strip("/") for r in roots]

    def owned(path: str) -> bool:
        return any(p == "" or path == p or path.startswith(p + "/") for p in prefixes)

    problems: list[str] = []
    for name, text in sorted(source.modules.items()):
        match = _PACKAGE.search(text)
        if match and not owned(match.group(1).replace(".", "/")):
            problems.append(f"{name}: package {match.group(1)} is outside the manifest roots")
    for key, value in source.data.items():
        for path in _data_leaves(key, value, prefixes):
            if not owned(path):
                problems.append(f"data at {path} is outside the manifest roots")
    return problems


def _data_leaves(path: str, value: Any, prefixes: list[str]) -> list[str]:
    # Descend only while the path is still a proper prefix of some root.
    if isinstance(value, dict) and any(p.startswith(path + "/") for p in prefixes):
        return [leaf for k, v in value.items() for leaf in _data_leaves(f"{path}/{k}", v, prefixes)]
    return [path]
