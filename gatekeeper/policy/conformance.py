"""Conformance cases: a policy repo's table of input → expected decision.

``conformance/cases.yaml`` in a policy directory::

    base:                       # the input document every case starts from
      version: 1
      subject: {id: s1, tier: free, kyc_level: email}
      ...
    cases:
      - id: kyc-none-refused    # unique, readable: it names the case in every report
        rule: kyc.refusals      # the rule the case exercises: named when the case fails
        input:                  # deep-merged over `base` (objects merge, anything else replaces)
          subject: {kyc_level: none}
        remove: [network.country]   # optional: dotted paths deleted from the input
        expect:                 # the decision must match every field listed here
          allow: false
          status: 403
          reasons: [{code: kyc_insufficient}]

Matching is partial for objects (fields not listed are not checked) and exact in length for
lists (``reasons: []`` means no reason). The same cases run on every engine; the engines'
decisions are also compared with each other field by field (``diff_values``).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gatekeeper.errors import PolicyLoadError
from gatekeeper.input_document import sample_input as build_sample_input
from gatekeeper.policy.engine import UNDEFINED

#: A complete input document from sample parts, used when a repo has no cases of its own.
SAMPLE_INPUT: dict[str, Any] = build_sample_input()


def sample_input() -> dict[str, Any]:
    """A fresh copy of ``SAMPLE_INPUT``, as gatekeeper would send it."""
    return copy.deepcopy(SAMPLE_INPUT)


@dataclass(frozen=True)
class Case:
    """One row of the table: an input and the decision fields it must produce."""

    id: str
    rule: str
    input: dict[str, Any]
    expect: dict[str, Any]
    note: str = ""


@dataclass
class CaseResult:
    """What one engine decided for one case, and how that differs from the expectation."""

    case: Case
    value: Any
    revision: str = ""
    mismatches: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.error

    def describe(self) -> str:
        problems = [self.error] if self.error else self.mismatches
        return f"case {self.case.id} (rule {self.case.rule}): " + "; ".join(problems)


def parse_cases(document: Any, origin: str = "conformance/cases.yaml") -> list[Case]:
    """Cases from a parsed cases document. Raises ``PolicyLoadError`` naming the bad case."""
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise PolicyLoadError(f"{origin}: expected a mapping with a `cases` list")
    base = document.get("base") or {}
    if not isinstance(base, dict):
        raise PolicyLoadError(f"{origin}: `base` must be a mapping")
    cases: list[Case] = []
    seen: set[str] = set()
    for index, raw in enumerate(document["cases"]):
        where = f"{origin}: case #{index + 1}"
        if not isinstance(raw, dict):
            raise PolicyLoadError(f"{where}: expected a mapping")
        case_id, rule, expect = raw.get("id"), raw.get("rule"), raw.get("expect")
        if not isinstance(case_id, str) or not case_id:
            raise PolicyLoadError(f"{where}: needs an `id`")
        if case_id in seen:
            raise PolicyLoadError(f"{where}: id {case_id!r} is used twice")
        seen.add(case_id)
        if not isinstance(rule, str) or not rule:
            raise PolicyLoadError(f"{where} ({case_id}): needs the `rule` it exercises")
        if not isinstance(expect, dict) or not expect:
            raise PolicyLoadError(f"{where} ({case_id}): needs an `expect` mapping")
        doc = merge(copy.deepcopy(base), raw.get("input") or {})
        for dotted in raw.get("remove") or []:
            _remove(doc, str(dotted).split("."))
        cases.append(Case(case_id, rule, doc, expect, str(raw.get("note", ""))))
    return cases


def load_cases(path: Path) -> list[Case]:
    """Cases from a YAML file."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyLoadError(f"{path}: {exc}") from exc
    return parse_cases(document, str(path))


def merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``new`` into ``into``: objects merge, anything else replaces."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def _remove(doc: dict[str, Any], path: list[str]) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def match_expected(expected: Any, actual: Any, path: str = "decision") -> list[str]:
    """Where ``actual`` does not match ``expected`` (objects partially, lists by length)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {_show(actual)}"]
        out: list[str] = []
        for key, want in expected.items():
            if key not in actual:
                out.append(f"{path}.{key}: missing (expected {_show(want)})")
            else:
                out.extend(match_expected(want, actual[key], f"{path}.{key}"))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {_show(expected)}, got {_show(actual)}"]
        return _itemwise(match_expected, expected, actual, path)
    if not _same_scalar(expected, actual):
        return [f"{path}: expected {_show(expected)}, got {_show(actual)}"]
    return []


def _itemwise(
    compare: Callable[[Any, Any, str], list[str]], a: list[Any], b: list[Any], path: str
) -> list[str]:
    """``compare`` run on the items of two lists of one length, each at ``path[index]``."""
    return [
        line
        for i, (x, y) in enumerate(zip(a, b, strict=True))
        for line in compare(x, y, f"{path}[{i}]")
    ]


def _same_scalar(a: Any, b: Any) -> bool:
    # 1 and 1.0 are the same JSON number; True and 1 are not the same value.
    return bool(a == b) and isinstance(a, bool) is isinstance(b, bool)


def diff_values(a: Any, b: Any, path: str = "decision") -> list[str]:
    """Every field where two decision values differ, as ``path: a != b``."""
    if a is UNDEFINED or b is UNDEFINED:
        return [] if a is b else [f"{path}: {_show(a)} != {_show(b)}"]
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(
                    f"{path}.{key}: {_show(a.get(key, UNDEFINED))} != "
                    f"{_show(b.get(key, UNDEFINED))}"
                )
            else:
                out.extend(diff_values(a[key], b[key], f"{path}.{key}"))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items ({_show(a)} != {_show(b)})"]
        return _itemwise(diff_values, a, b, path)
    if not _same_scalar(a, b):
        return [f"{path}: {_show(a)} != {_show(b)}"]
    return []


def _show(value: Any) -> str:
    if value is UNDEFINED:
        return "<undefined>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


Evaluate = Callable[[dict[str, Any]], Awaitable[tuple[Any, str]]]


def judge(case: Case, value: Any, revision: str = "") -> CaseResult:
    """Compare one engine's raw decision value for ``case`` with the case's expectation."""
    from gatekeeper.policy.engine import decision_from_value

    result = CaseResult(case, value, revision)
    if value is UNDEFINED:
        result.error = "the decision is undefined"
        return result
    try:
        # Matched against the validated decision, so defaults count as written.
        normalized = decision_from_value(value, case.input).model_dump(mode="json")
    except Exception as exc:
        result.error = str(exc)
    else:
        result.mismatches = match_expected(case.expect, normalized)
    return result


async def run_cases(evaluate: Evaluate, cases: list[Case]) -> list[CaseResult]:
    """Evaluate every case with ``evaluate`` (an engine's ``evaluate_raw``) and judge it."""
    results: list[CaseResult] = []
    for case in cases:
        try:
            value, revision = await evaluate(case.input)
        except Exception as exc:
            results.append(CaseResult(case, UNDEFINED, error=f"evaluation failed: {exc}"))
            continue
        results.append(judge(case, value, revision))
    return results
