"""What each subject and each account cluster did, and what the anti-extraction policy did to
them: the per-subject and per-cluster tables of ``audit stats`` and the report.

The anti-extraction facts come from the decision (``decision_facts``): the grade and evidence the
policy noted (the default pack writes ``obligations.notes`` ``distillation:<level>`` and
``evidence:<a>+<b>``, docs/distillation.md), its obligations (``flag_for_review``,
``step_up_kyc``), and what enforcement withheld (reasoning tokens removed from the response,
refusals).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

LEVELS = ("watch", "suspect", "strong")
#: Refusal codes that the anti-extraction rules give (the default pack's).
EXTRACTION_REASONS = frozenset({"distillation_suspected", "kyc_step_up_required"})


@dataclass
class Activity:
    """One subject's (or one cluster's) decisions, and what was withheld from it."""

    decisions: int = 0
    refused: int = 0
    graded: int = 0  # decisions the anti-extraction policy graded (watch, suspect, strong)
    levels: Counter[str] = field(default_factory=Counter)
    flagged: int = 0  # obligations.flag_for_review
    step_ups: int = 0  # obligations.step_up_kyc
    extraction_refusals: int = 0
    evidence: Counter[str] = field(default_factory=Counter)
    reasoning_seen: int = 0
    reasoning_removed: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    names: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    max_size: int = 0  # clusters: the largest size seen

    def add(self, facts: dict[str, Any], at: int | None) -> None:
        self.decisions += 1
        self.refused += facts["decision"] == "deny"
        if facts["level"]:
            self.graded += 1
            self.levels[facts["level"]] += 1
            self.evidence.update(facts["evidence"])
        self.flagged += facts["flag_for_review"]
        self.step_ups += facts["step_up_kyc"] is not None
        self.extraction_refusals += bool(EXTRACTION_REASONS.intersection(facts["reasons"]))
        reasoning = facts["reasoning"]
        seen, removed = reasoning.get("seen_tokens"), reasoning.get("removed_tokens")
        self.reasoning_seen += seen if isinstance(seen, int) else 0
        self.reasoning_removed += removed if isinstance(removed, int) else 0
        if at is not None:
            self.first_ns = at if self.first_ns is None else min(self.first_ns, at)
            self.last_ns = at if self.last_ns is None else max(self.last_ns, at)
        for key in ("subject", "org", "tier", "cluster"):
            if facts[key]:
                self.names[key][str(facts[key])] += 1
        self.names["linked_by"].update(facts["linked_by"])
        if isinstance(facts["cluster_size"], int):
            self.max_size = max(self.max_size, facts["cluster_size"])

    @property
    def highest_level(self) -> str | None:
        return next((level for level in reversed(LEVELS) if self.levels.get(level)), None)

    @property
    def of_interest(self) -> bool:
        """Whether the anti-extraction policy did anything to it (a KYC step-up alone is not
        enough: the KYC rules ask for them too)."""
        return bool(self.graded or self.flagged or self.extraction_refusals)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "refused": self.refused,
            "graded": self.graded,
            "levels": dict(self.levels),
            "highest_level": self.highest_level,
            "flagged_for_review": self.flagged,
            "step_ups": self.step_ups,
            "extraction_refusals": self.extraction_refusals,
            "evidence": dict(self.evidence.most_common()),
            "reasoning_seen": self.reasoning_seen,
            "reasoning_removed": self.reasoning_removed,
            "subjects": len(self.names["subject"]),
            "max_size": self.max_size,
            "linked_by": sorted(self.names["linked_by"]),
        }


def rank(activities: dict[str, Activity]) -> list[tuple[str, Activity]]:
    """Those the anti-extraction policy acted on, most severe first."""
    severity = {level: i for i, level in enumerate(LEVELS, start=1)}
    return sorted(
        ((name, a) for name, a in activities.items() if a.of_interest),
        key=lambda kv: (
            -severity.get(kv[1].highest_level or "", 0),
            -kv[1].flagged,
            -kv[1].graded,
            kv[0],
        ),
    )
