"""Impact analysis: re-evaluate the inputs of a decision log under another policy revision.

Every decision event that carries an ``input`` (requests refused before the policy, e.g. for a
missing API key, carry none and are skipped) is evaluated again with the new policy. The report
counts outcomes before and after (``allow``, ``refuse <status> <code>``, ``shadow <status>
<code>``, ``policy_error``), counts by primary reason, and lists every kind of change (an
outcome change such as ``allow → refuse 403 kyc_insufficient``, or, for the same outcome, the
decision fields that changed, e.g. ``allow: quotas, reasoning``) with the first examples.
Inputs are replayed as logged: fields the log masked are replayed masked (counted as ``masked``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.contract import Decision
from gatekeeper.errors import PolicyError
from gatekeeper.policy.conformance import diff_values
from gatekeeper.policy.engine import PolicyEngine, decision_from_value

POLICY_ERROR = "policy_error"


@dataclass
class Change:
    """One recorded request whose decision would change."""

    decision_id: str
    subject: str | None
    before: str
    after: str
    fields: list[str]


@dataclass
class ReplayReport:
    """What replaying a decision log under a new revision would change."""

    revision: str
    events: int = 0
    replayed: int = 0
    skipped: int = 0
    masked: int = 0
    unreadable: int = 0
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    reasons_before: Counter[str] = field(default_factory=Counter)
    reasons_after: Counter[str] = field(default_factory=Counter)
    old_revisions: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Change]] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(self.changes.values())

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        counts = ("events", "replayed", "skipped", "masked", "unreadable", "changed")
        return {
            "revision": self.revision,
            **{name: getattr(self, name) for name in counts},
            "old_revisions": dict(self.old_revisions),
            "outcomes": {"before": dict(self.before), "after": dict(self.after)},
            "reasons": {"before": dict(self.reasons_before), "after": dict(self.reasons_after)},
            "changes": {
                kind: {"count": n, "examples": [vars(c) for c in self.examples.get(kind, [])]}
                for kind, n in self.changes.most_common()
            },
        }

    def format(self) -> str:
        """A plain-text report for the terminal."""
        out = [
            f"replayed {self.replayed} of {self.events} decision events under revision "
            f"{self.revision} (recorded under {_list(self.old_revisions)})",
            f"  skipped (no input: refused before the policy): {self.skipped}"
            + (f"; unreadable lines: {self.unreadable}" if self.unreadable else "")
            + (f"; with masked input: {self.masked}" if self.masked else ""),
            "",
            f"{'outcome':<44}{'before':>8}{'after':>8}{'delta':>8}",
        ]
        out.extend(_table(self.before, self.after))
        out += ["", f"{'primary reason':<44}{'before':>8}{'after':>8}{'delta':>8}"]
        out.extend(_table(self.reasons_before, self.reasons_after))
        out.append("")
        if not self.changes:
            out.append("no decision would change")
            return "\n".join(out)
        out.append(f"{self.changed} decision(s) would change:")
        for kind, count in self.changes.most_common():
            out.append(f"  {kind}: {count}")
            for ex in self.examples.get(kind, []):
                who = f" subject {ex.subject}" if ex.subject else ""
                names = list(dict.fromkeys(_field_name(f) for f in ex.fields))
                more = ", …" if len(names) > 5 else ""
                detail = f" [changed: {', '.join(names[:5])}{more}]" if names else ""
                out.append(f"    e.g. decision {ex.decision_id}{who}{detail}")
        return "\n".join(out)


def _field_name(difference: str) -> str:
    # "decision.quotas[0].key: 'a' != 'b'" -> "quotas[0].key"
    return difference.split(": ", 1)[0].removeprefix("decision.")


def _list(counter: Counter[str]) -> str:
    return ", ".join(f"{rev} ({n})" for rev, n in counter.most_common(3)) or "no revision"


def _table(before: Counter[str], after: Counter[str]) -> list[str]:
    rows = []
    for key in sorted(set(before) | set(after), key=lambda k: (-before[k] - after[k], k)):
        delta = after[key] - before[key]
        rows.append(f"  {key:<42}{before[key]:>8}{after[key]:>8}{delta:>+8}")
    return rows


def read_events(
    paths: Iterable[Path], report: ReplayReport | None = None
) -> Iterator[dict[str, Any]]:
    """Decision events from JSONL decision logs (checkpoints and other records are skipped)."""
    for path in paths:
        with path.open("rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    if report is not None:
                        report.unreadable += 1
                    continue
                if isinstance(event, dict) and "decision_id" in event:
                    kind = (event.get("gatekeeper") or {}).get("kind", "decision")
                    if kind == "decision":
                        yield event


def outcome_of(decision: Decision) -> str:
    """``allow``, ``refuse <status> <code>`` or ``shadow <status> <code>``."""
    if decision.allow:
        return "allow"
    code = decision.reasons[0].code if decision.reasons else "?"
    return f"{'shadow' if decision.shadow else 'refuse'} {decision.status} {code}"


def _reason_of(decision: Decision | None) -> str:
    if decision is None:
        return POLICY_ERROR
    return decision.reasons[0].code if decision.reasons else "allow"


def _recorded(event: dict[str, Any]) -> tuple[str, Decision | None]:
    error = event.get("error") or {}
    if error.get("code") == POLICY_ERROR:
        return POLICY_ERROR, None
    input_doc = event.get("input")
    # gatekeeper logs decisions with their quotas resolved; an OPA server logs the policy's
    # raw result, whose quota templates are resolved here against the recorded input.
    try:
        decision = decision_from_value(
            event.get("result"), input_doc if isinstance(input_doc, dict) else None
        )
    except PolicyError:  # no valid decision was recorded: the policy failed
        return POLICY_ERROR, None
    return outcome_of(decision), decision


def policy_input(logged: dict[str, Any]) -> dict[str, Any]:
    """The input the policy saw, from the one logged: the log writes the request time in
    nanoseconds (``time.unix_ns``, beyond the integers JSON numbers hold exactly) as a decimal
    string (docs/audit.md, "The hash chain"); policies compare it as a number."""
    when = logged.get("time")
    if isinstance(when, dict):
        ns = when.get("unix_ns")
        if isinstance(ns, str) and ns.lstrip("-").isdigit():
            return {**logged, "time": {**when, "unix_ns": int(ns)}}
    return logged


async def replay_logs(
    engine: PolicyEngine, paths: Iterable[Path], *, examples: int = 3
) -> ReplayReport:
    """Replay every decision event of the JSONL logs at ``paths`` with ``engine``."""
    report = ReplayReport(engine.revision)
    return await replay(engine, read_events(paths, report), examples=examples, report=report)


async def replay(
    engine: PolicyEngine,
    events: Iterable[dict[str, Any]],
    *,
    examples: int = 3,
    report: ReplayReport | None = None,
) -> ReplayReport:
    """Re-evaluate ``events`` with ``engine`` and report what would change."""
    report = report or ReplayReport(engine.revision)
    for event in events:
        report.events += 1
        input_doc = event.get("input")
        if not isinstance(input_doc, dict):
            report.skipped += 1
            continue
        report.replayed += 1
        if event.get("erased") or event.get("masked"):
            report.masked += 1
        revision = ((event.get("bundles") or {}).get("gatekeeper") or {}).get("revision")
        report.old_revisions[str(revision or "unknown")] += 1
        before, old = _recorded(event)
        input_doc = policy_input(input_doc)
        try:
            value, _ = await engine.evaluate_raw(input_doc)
            new: Decision | None = decision_from_value(value, input_doc)
        except PolicyError:
            value, new = None, None
        after = outcome_of(new) if new is not None else POLICY_ERROR
        report.before[before] += 1
        report.after[after] += 1
        report.reasons_before[_reason_of(old)] += 1
        report.reasons_after[_reason_of(new)] += 1
        fields: list[str] = []
        if old is not None and new is not None:
            fields = diff_values(old.model_dump(mode="json"), new.model_dump(mode="json"))
        if before != after:
            kind = f"{before} → {after}"
        elif fields:
            top = sorted({f.split(":")[0].split(".")[1].split("[")[0] for f in fields})
            kind = f"{before}: {', '.join(top)} changed"
        else:
            continue
        report.changes[kind] += 1
        shown = report.examples.setdefault(kind, [])
        if len(shown) < examples:
            subject = (input_doc.get("subject") or {}).get("id")
            shown.append(Change(str(event["decision_id"]), subject, before, after, fields))
    return report
