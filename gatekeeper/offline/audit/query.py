"""Finding and counting decisions in a log: the filters of ``audit query`` and ``audit stats``."""

from __future__ import annotations

import heapq
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gatekeeper.offline.audit.activity import Activity, rank
from gatekeeper.offline.audit.reader import kind_of

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d)?)(\.\d+)?)?(Z|[+-]\d\d:\d\d)?$")


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """Nanoseconds since the epoch for ``2026-05-01``, ``2026-05-01T10:00:00Z`` (RFC 3339, any
    fraction) or a duration ago (``90s``, ``15m``, ``2h``, ``7d``, ``1w``); naive times are UTC.
    Raises ``ValueError``."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(float(relative.group(1)) * _UNITS[relative.group(2)] * 1e9)
    match = _STAMP.match(text)
    if not match:
        raise ValueError(f"not a time: {text!r} (use 2026-05-01, 2026-05-01T10:00:00Z or 2h)")
    day, clock, fraction, zone = match.groups()
    base = datetime.fromisoformat(
        f"{day}T{clock or '00:00:00'}{'' if zone in (None, 'Z') else zone}"
    )
    if base.tzinfo is None:
        base = base.replace(tzinfo=UTC)
    nanos = int((fraction or ".0")[1:].ljust(9, "0")[:9])
    return int(base.timestamp()) * 1_000_000_000 + nanos


def event_time_ns(entry: dict[str, Any]) -> int | None:
    """An entry's ``timestamp`` in nanoseconds, or ``None`` when it has none that parses."""
    stamp = entry.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return parse_time(stamp)
    except ValueError:
        return None


@dataclass(frozen=True)
class Filters:
    """Which decisions a reviewer looks at: one implementation for ``audit query``, ``stats``
    and ``report`` (whose page filters its embedded rows the same way, in ``report.js``).
    Every field left ``None`` matches everything; the fields set are combined with AND."""

    decision_id: str | None = None
    subject: str | None = None  # the subject's id or its org
    org: str | None = None
    cluster: str | None = None
    decision: str | None = None  # "allow" | "deny"
    reason: str | None = None
    tier: str | None = None
    country: str | None = None  # any case
    tag: str | None = None  # a jurisdiction tag
    level: str | None = None  # an anti-extraction grade (watch, suspect, strong), or "any"
    evidence: str | None = None  # a piece of anti-extraction evidence, e.g. cot_high
    since_ns: int | None = None
    until_ns: int | None = None

    def match(self, entry: dict[str, Any]) -> bool:
        if kind_of(entry) != "decision":
            return False
        if self.decision_id is not None and entry.get("decision_id") != self.decision_id:
            return False
        facts = decision_facts(entry)
        for wanted, value in (
            (self.org, facts["org"]),
            (self.cluster, facts["cluster"]),
            (self.decision, facts["decision"]),
            (self.tier, facts["tier"]),
        ):
            if wanted is not None and value != wanted:
                return False
        if self.subject is not None and self.subject not in (facts["subject"], facts["org"]):
            return False
        if self.reason is not None and self.reason not in facts["reasons"]:
            return False
        if self.country is not None and (facts["country"] or "").upper() != self.country.upper():
            return False
        if self.tag is not None and self.tag not in facts["jurisdictions"]:
            return False
        if self.level is not None and not (
            facts["level"] == self.level or (self.level == "any" and facts["level"])
        ):
            return False
        if self.evidence is not None and self.evidence not in facts["evidence"]:
            return False
        if self.since_ns is not None or self.until_ns is not None:
            at = event_time_ns(entry)
            if at is None:
                return False
            if self.since_ns is not None and at < self.since_ns:
                return False
            if self.until_ns is not None and at > self.until_ns:
                return False
        return True

    def as_options(self) -> list[str]:
        """The command-line options that select the same decisions (times as RFC 3339)."""
        options: list[str] = []
        for name, value in self._named():
            options += [name, value]
        return options

    def as_fragment(self) -> dict[str, str]:
        """The same filters by the names the report's page takes (``#subject=…``)."""
        return {name.removeprefix("--"): value for name, value in self._named()}

    def _named(self) -> list[tuple[str, str]]:
        named = []
        for name, value in (
            ("--id", self.decision_id),
            ("--subject", self.subject),
            ("--org", self.org),
            ("--cluster", self.cluster),
            ("--decision", self.decision),
            ("--reason", self.reason),
            ("--tier", self.tier),
            ("--country", self.country),
            ("--tag", self.tag),
            ("--level", self.level),
            ("--evidence", self.evidence),
            ("--since", rfc3339_or_none(self.since_ns)),
            ("--until", rfc3339_or_none(self.until_ns)),
        ):
            if value is not None:
                named.append((name, value))
        return named


def rfc3339_or_none(ns: int | None) -> str | None:
    if ns is None:
        return None
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return stamp + (f".{nanos:09d}".rstrip("0") if nanos else "") + "Z"


def select(entries: Iterable[dict[str, Any]], filters: Filters) -> Iterator[dict[str, Any]]:
    return (entry for entry in entries if filters.match(entry))


def merge_by_time(
    chains: Sequence[Iterable[dict[str, Any]]],
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The entries of several chains as one stream in time order, each with the index of its
    chain. Reading is lazy (one entry per chain in memory) and every chain keeps its own order:
    the next entry is the earliest of the chains' next entries (events are stamped when their
    request arrives and written when it ends, so a chain is in time order only nearly)."""

    def stamped(index: int, entries: Iterable[dict[str, Any]]) -> Iterator[tuple[int, int, Any]]:
        at = -1
        for entry in entries:
            at = event_time_ns(entry) or at  # an entry without a time stays with the one before
            yield at, index, entry

    merged = heapq.merge(*(stamped(i, c) for i, c in enumerate(chains)), key=lambda t: t[:2])
    for _, index, entry in merged:
        yield index, entry


def decision_facts(entry: dict[str, Any]) -> dict[str, Any]:
    """The few facts of a decision event that reviewers filter and count by."""
    inp = _obj(entry.get("input"))
    subject, network = _obj(inp.get("subject")), _obj(inp.get("network"))
    signals, result = _obj(inp.get("signals")), _obj(entry.get("result"))
    gk = _obj(entry.get("gatekeeper"))
    enforcement = _obj(gk.get("enforcement"))
    reasons = [r.get("code") for r in result.get("reasons") or [] if isinstance(r, dict)]
    cluster = _obj(signals.get("cluster"))
    shadow = bool(result.get("shadow"))
    # Refused = what the client got: a policy refusal (unless shadow), a quota, or gatekeeper
    # itself failing closed after the policy allowed (e.g. the durable log was unavailable).
    refused = result.get("allow") is not True and not shadow
    quotas = enforcement.get("quotas") or []
    if any(isinstance(q, dict) and q.get("refused") for q in quotas):
        refused = True
        reasons.append("quota_exceeded")
    status = enforcement.get("status")
    error = _obj(entry.get("error")).get("code")
    if isinstance(status, int) and status >= 400 and isinstance(error, str):
        refused = True
        if error not in reasons:
            reasons.append(error)
    obligations = _obj(result.get("obligations"))
    notes = [n for n in obligations.get("notes") or [] if isinstance(n, str)]
    level = next((n.split(":", 1)[1] for n in notes if n.startswith("distillation:")), None)
    evidence = next((n.split(":", 1)[1] for n in notes if n.startswith("evidence:")), "")
    step_up = obligations.get("step_up_kyc")
    cot = signals.get("cot_elicitation")
    return {
        "id": entry.get("decision_id"),
        "seq": gk.get("seq"),
        "timestamp": entry.get("timestamp"),
        "subject": subject.get("id"),
        "org": subject.get("org"),
        "tier": subject.get("tier"),
        "cluster": cluster.get("id") or cluster.get("key") or subject.get("org"),
        "country": network.get("country"),
        "jurisdictions": network.get("jurisdiction_tags") or [],
        "decision": "deny" if refused else "allow",
        "shadow": shadow,
        "status": status,
        # Each code once: a refusal counts once under every reason it carries.
        "reasons": list(dict.fromkeys(r for r in reasons if isinstance(r, str))),
        "reasoning": _obj(enforcement.get("reasoning")),
        "path": _obj(gk.get("request")).get("path"),
        "revision": _obj(_obj(entry.get("bundles")).get("gatekeeper")).get("revision"),
        "model": _obj(inp.get("request")).get("model"),
        # What the anti-extraction policy made of the request: its grade and evidence (the
        # default pack's notes "distillation:<level>", "evidence:<a>+<b>"), and its obligations.
        "level": level if level and level != "none" else None,
        "evidence": [e for e in evidence.split("+") if e],
        "flag_for_review": obligations.get("flag_for_review") is True,
        "step_up_kyc": step_up if isinstance(step_up, str) else None,
        "cot_elicitation": cot if isinstance(cot, int | float) else None,
        "cluster_size": cluster.get("size") if isinstance(cluster.get("size"), int) else None,
        "linked_by": [x for x in cluster.get("linked_by") or [] if isinstance(x, str)],
    }


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class Stats:
    """Counts over a log, for ``audit stats`` and the HTML report."""

    entries: int = 0
    decisions: int = 0
    allowed: int = 0
    denied: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    kinds: Counter[str] = field(default_factory=Counter)
    gap_dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    tiers: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    countries: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    jurisdictions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    refused_subjects: Counter[str] = field(default_factory=Counter)
    refused_clusters: Counter[str] = field(default_factory=Counter)
    reasoning_modes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    reasoning_tokens: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    revisions: Counter[str] = field(default_factory=Counter)
    minutes: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    #: Reasons carried by refusals, summed (above ``denied`` when refusals carry several).
    reason_mentions: int = 0
    subjects: dict[str, Activity] = field(default_factory=lambda: defaultdict(Activity))
    clusters: dict[str, Activity] = field(default_factory=lambda: defaultdict(Activity))
    #: Anti-extraction grades per minute, and every decision's summed up.
    levels: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    extraction: Activity = field(default_factory=Activity)

    def add(self, entry: dict[str, Any]) -> None:
        self.entries += 1
        kind = kind_of(entry)
        self.kinds[kind] += 1
        if kind == "gap":
            dropped = _obj(_obj(entry.get("gatekeeper")).get("gap")).get("dropped")
            self.gap_dropped += dropped if isinstance(dropped, int) else 0
        if kind != "decision":
            return
        facts = decision_facts(entry)
        outcome = facts["decision"]
        self.decisions += 1
        self.allowed += outcome == "allow"
        self.denied += outcome == "deny"
        at = event_time_ns(entry)
        if at is not None:
            self.first_ns = at if self.first_ns is None else min(self.first_ns, at)
            self.last_ns = at if self.last_ns is None else max(self.last_ns, at)
            self.minutes[at // 60_000_000_000][outcome] += 1
        if isinstance(facts["status"], int):
            self.statuses[facts["status"]] += 1
        tier = str(facts["tier"] or "unknown")
        self.tiers[tier][outcome] += 1
        self.countries[str(facts["country"] or "unknown")][outcome] += 1
        for tag in facts["jurisdictions"]:
            self.jurisdictions[str(tag)][outcome] += 1
        if facts["revision"]:
            self.revisions[str(facts["revision"])] += 1
        self.subjects[str(facts["subject"] or "unidentified")].add(facts, at)
        self.clusters[str(facts["cluster"] or "unknown")].add(facts, at)
        self.extraction.add(facts, at)
        if facts["level"] and at is not None:
            self.levels[at // 60_000_000_000][facts["level"]] += 1
        if outcome == "deny":
            self.reasons.update(facts["reasons"] or ["unknown"])
            self.reason_mentions += len(facts["reasons"]) or 1
            self.refused_subjects[str(facts["subject"] or "unidentified")] += 1
            self.refused_clusters[str(facts["cluster"] or "unknown")] += 1
        reasoning = facts["reasoning"]
        if reasoning.get("mode") and outcome == "allow":
            self.reasoning_modes[tier][str(reasoning["mode"])] += 1
            for name in ("seen_tokens", "exposed_tokens", "removed_tokens"):
                value = reasoning.get(name)
                if isinstance(value, int):
                    self.reasoning_tokens[tier][name] += value

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``audit stats --json``)."""
        return {
            "entries": self.entries,
            "kinds": dict(self.kinds),
            "decisions": self.decisions,
            "allowed": self.allowed,
            "denied": self.denied,
            "gap_dropped": self.gap_dropped,
            "first": _stamp(self.first_ns),
            "last": _stamp(self.last_ns),
            # refusals carrying each reason: one with two reasons counts under both
            "reasons": dict(self.reasons.most_common()),
            "reason_mentions": self.reason_mentions,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "tiers": {k: dict(v) for k, v in sorted(self.tiers.items())},
            "countries": {k: dict(v) for k, v in sorted(self.countries.items())},
            "jurisdictions": {k: dict(v) for k, v in sorted(self.jurisdictions.items())},
            "top_refused_subjects": dict(self.refused_subjects.most_common(10)),
            "top_refused_clusters": dict(self.refused_clusters.most_common(10)),
            "reasoning_modes": {k: dict(v) for k, v in sorted(self.reasoning_modes.items())},
            "reasoning_tokens": {k: dict(v) for k, v in sorted(self.reasoning_tokens.items())},
            "revisions": dict(self.revisions.most_common()),
            "anti_extraction": {
                **self.extraction.as_dict(),
                "flagged_subjects": {k: v.as_dict() for k, v in rank(self.subjects)[:50]},
                "flagged_clusters": {k: v.as_dict() for k, v in rank(self.clusters)[:50]},
            },
        }


def collect_stats(entries: Iterable[dict[str, Any]]) -> Stats:
    stats = Stats()
    for entry in entries:
        stats.add(entry)
    return stats


def _stamp(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
