"""Test coverage (``gatekeeper policy test --coverage``), in ``opa test --coverage``'s shape.

regorus records, per module, the lines of the expressions its evaluations reached and those
they never reached (``Engine.set_enable_coverage``); the report turns them into OPA's JSON:
per file the ``covered`` and ``not_covered`` row ranges, their line counts and a percentage,
then the same totals for every file. It adds, per file, the rules none of whose lines were
reached (``not_covered_rules``: ``name`` and ``row``), found in the modules' syntax trees.

It differs from OPA's where the evaluators do: OPA also counts a rule head (covered when the
body was true), regorus only expressions; and regorus evaluates every rule of a package that
is referenced as a whole (``import data.x`` then ``x.rule``), which then counts as reached.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gatekeeper.policy.syntax import syntax_trees


def coverage_report(engine: Any, modules: dict[str, str]) -> dict[str, Any]:
    """OPA's coverage report for what ``engine`` (compiled from ``modules`` with coverage on)
    has evaluated so far."""
    raw = orjson.loads(engine.get_coverage_report_as_json())
    trees = syntax_trees(modules)
    files: dict[str, Any] = {}
    total_covered = total_missed = 0
    for entry in sorted(raw.get("files", []), key=lambda f: str(f["path"])):
        name = str(entry["path"])
        covered = sorted(set(entry.get("covered", [])))
        missed = sorted(set(entry.get("not_covered", [])) - set(covered))
        report: dict[str, Any] = {}
        if covered:
            report["covered"] = _ranges(covered)
        if missed:
            report["not_covered"] = _ranges(missed)
        if covered:
            report["covered_lines"] = len(covered)
        if missed:
            report["not_covered_lines"] = len(missed)
        if covered or missed:
            report["coverage"] = _percent(len(covered), len(missed))
        unreached = _unreached_rules(
            trees.get(name, {}), modules.get(name, ""), set(covered), set(missed)
        )
        if unreached:
            report["not_covered_rules"] = unreached
        files[name] = report
        total_covered += len(covered)
        total_missed += len(missed)
    out: dict[str, Any] = {"files": files}
    if total_covered:
        out["covered_lines"] = total_covered
    if total_missed:
        out["not_covered_lines"] = total_missed
    if total_covered or total_missed:
        out["coverage"] = _percent(total_covered, total_missed)
    return out


def format_coverage(report: dict[str, Any]) -> str:
    """A readable summary: per file its coverage and the rules never reached."""
    lines = []
    width = max((len(name) for name in report["files"]), default=10)
    for name, entry in report["files"].items():
        covered = entry.get("covered_lines", 0)
        total = covered + entry.get("not_covered_lines", 0)
        lines.append(
            f"{name:<{width}}  {covered:>4}/{total:<4} lines  {entry.get('coverage', 0):6.1f}%"
        )
        rules = entry.get("not_covered_rules", [])
        if rules:
            lines.append(
                "  not covered: " + ", ".join(f"{r['name']} ({name}:{r['row']})" for r in rules)
            )
    lines.append("-" * 80)
    covered = report.get("covered_lines", 0)
    total = covered + report.get("not_covered_lines", 0)
    lines.append(f"coverage: {report.get('coverage', 0):.1f}% ({covered}/{total} lines)")
    return "\n".join(lines)


def coverage_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def _percent(covered: int, missed: int) -> float:
    return 100.0 * covered / (covered + missed) if covered + missed else 0.0


def _ranges(rows: list[int]) -> list[dict[str, Any]]:
    """Consecutive rows as OPA's ``{"start": {"row"}, "end": {"row"}}`` ranges."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if out and out[-1]["end"]["row"] == row - 1:
            out[-1]["end"]["row"] = row
        else:
            out.append({"start": {"row": row}, "end": {"row": row}})
    return out


def _unreached_rules(
    tree: dict[str, Any], text: str, covered: set[int], missed: set[int]
) -> list[dict[str, Any]]:
    """Rules (each definition apart) with expressions of their own, none of them reached."""
    source = text.encode()
    out = []
    for rule in tree.get("rules", []):
        spec = rule.get("Spec")
        if not spec:
            continue
        first = spec["span"]["line"]
        last = first + source.count(b"\n", spec["span"]["start"], spec["span"]["end"])
        rows = range(first, last + 1)
        if not covered.intersection(rows) and missed.intersection(rows):
            out.append({"name": _rule_name(spec["head"]), "row": first})
    return out


def _rule_name(head: dict[str, Any]) -> str:
    node = next(iter(head.values()))["refr"]
    parts: list[str] = []
    while True:
        kind, body = next(iter(node.items()))
        if kind == "Var":
            parts.append(str(body["value"]))
            break
        if kind == "RefDot":
            parts.append(str(body["field"][1]))
        else:  # RefBrack and the like: a computed key
            parts.append("[…]")
        node = body["refr"]
    return ".".join(reversed(parts))
