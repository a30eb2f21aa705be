"""STIX 2.1 bundles in and out: shared intelligence as policy data, flagged clusters as STIX.

``import_bundle`` reads a bundle with the ``stix2`` package and converts its ``indicator``
objects into the intel document the signal stage loads (setting ``signals.intel_path``;
gatekeeper/signals/intel.py). ``export_bundle`` turns the clusters the default pack flagged in
a decision log into a bundle another provider can import. docs/intel.md describes both,
with the exact pattern forms accepted; nothing here is imported per request.

Pattern forms accepted (any number of them joined with OR, in one observation or several):

- ``ipv4-addr:value`` / ``ipv6-addr:value`` / ``network-traffic:src_ref.value`` with ``=``
  (an address or a CIDR prefix), ``ISSUBSET`` (a prefix) or ``IN (...)``: kind ``network``;
- ``autonomous-system:number`` with ``=`` or ``IN``: kind ``asn``;
- ``network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'`` or
  ``x-gatekeeper-client:user_agent`` with ``=`` or ``IN`` (exact): kind ``user_agent``;
- ``x-gatekeeper-payment:fingerprint_sha256`` (64 hex digits, the SHA-256 of the payment
  fingerprint) with ``=`` or ``IN``: kind ``payment``;
- ``x-gatekeeper-prompt-family:band`` (a band key of gatekeeper's prompt-family sketch, or a
  family id ``f-…``) with ``=`` or ``IN``: kind ``prompt_family``.

An OR term of another form is reported and left out (the rest of the indicator still matches);
AND, FOLLOWEDBY, NOT and qualifiers (WITHIN, REPEATS, START/STOP) cannot be reduced to lookups,
so such an indicator is reported and not imported at all.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import stix2
from stix2 import patterns as sp
from stix2.pattern_visitor import create_pattern_object

from gatekeeper.offline.audit.query import decision_facts, event_time_ns
from gatekeeper.offline.audit.reader import kind_of
from gatekeeper.signals.intel import INTEL_VERSION, compact_band, payment_hash
from gatekeeper.signals.stage import network_prefix

_USER_AGENT_HTTP = "network-traffic:extensions.http-request-ext.request_header.User-Agent"

#: Object path (type:property.property…) -> indicator kind.
PATHS = {
    "ipv4-addr:value": "network",
    "ipv6-addr:value": "network",
    "network-traffic:src_ref.value": "network",
    "autonomous-system:number": "asn",
    _USER_AGENT_HTTP: "user_agent",
    "x-gatekeeper-client:user_agent": "user_agent",
    "x-gatekeeper-payment:fingerprint_sha256": "payment",
    "x-gatekeeper-prompt-family:band": "prompt_family",
}

_OPERATORS = {"network": ("=", "ISSUBSET", "IN")}
_DEFAULT_OPERATORS = ("=", "IN")


class UnsupportedPattern(ValueError):
    """A pattern (or a part of one) that cannot be matched with lookups."""


@dataclass
class ImportResult:
    """The intel document built from bundles, and what was left out and why."""

    indicators: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``{"id", "reason", "pattern"}``: indicators not imported, or terms left out of one.
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    revoked: int = 0
    expired: int = 0
    objects: int = 0

    def document(self, generated: datetime | None = None) -> dict[str, Any]:
        """The intel document (``signals.intel_path``)."""
        when = generated or datetime.now(UTC)
        return {
            "version": INTEL_VERSION,
            "generated": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "indicators": sorted(self.indicators.values(), key=lambda i: i["id"]),
            "unsupported": self.unsupported,
        }


# --- import --------------------------------------------------------------------------------


def _path_of(path: Any) -> str:
    parts = []
    for component in path.property_path:
        if not isinstance(component, sp.BasicObjectPathComponent):
            raise UnsupportedPattern(f"object path {path} (list index)")
        parts.append(str(component.property_name))
    return f"{path.object_type_name}:{'.'.join(parts)}"


def _constants(rhs: Any) -> list[Any]:
    values = rhs.value if isinstance(rhs, sp.ListConstant) else [rhs]
    return [v.value for v in values]


def _term(expression: Any) -> tuple[str, list[Any]]:
    """The kind and values of one comparison."""
    if not isinstance(expression, sp._ComparisonExpression):
        raise UnsupportedPattern(f"{type(expression).__name__} is not a comparison")
    if expression.negated:
        raise UnsupportedPattern(f"NOT in {expression}")
    path = _path_of(expression.lhs)
    kind = PATHS.get(path)
    if kind is None:
        raise UnsupportedPattern(f"object path {path}")
    operator = expression.operator
    if operator not in _OPERATORS.get(kind, _DEFAULT_OPERATORS):
        raise UnsupportedPattern(f"operator {operator} on {path}")
    values = []
    for value in _constants(expression.rhs):
        values.append(_checked(kind, value, path))
    return kind, values


def _checked(kind: str, value: Any, path: str) -> Any:
    if kind == "network":
        try:
            return str(ipaddress.ip_network(str(value), strict=False))
        except ValueError as exc:
            raise UnsupportedPattern(f"{path}: {exc}") from exc
    if kind == "asn":
        if type(value) is not int:
            raise UnsupportedPattern(f"{path}: {value!r} is not a number")
        return value
    if not isinstance(value, str) or not value:
        raise UnsupportedPattern(f"{path}: {value!r} is not a string")
    if kind == "payment":
        digest = value.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise UnsupportedPattern(f"{path}: {value!r} is not a SHA-256 in hex")
        return digest
    if kind == "prompt_family":
        return compact_band(value)
    return value


def _disjuncts(expression: Any) -> Iterator[Any]:
    """The comparisons of a pattern made of ORs only (raises for anything else)."""
    if isinstance(expression, sp.ParentheticalExpression):
        yield from _disjuncts(expression.expression)
    elif isinstance(expression, sp.ObservationExpression):
        yield from _disjuncts(expression.operand)
    elif isinstance(expression, sp.OrObservationExpression | sp.OrBooleanExpression):
        for operand in expression.operands:
            yield from _disjuncts(operand)
    elif isinstance(expression, sp.QualifiedObservationExpression):
        raise UnsupportedPattern("qualifiers (WITHIN, REPEATS, START/STOP)")
    elif isinstance(
        expression,
        sp.AndObservationExpression | sp.AndBooleanExpression | sp.FollowedByObservationExpression,
    ):
        raise UnsupportedPattern(f"{expression.operator} (only OR can be matched per request)")
    else:
        yield expression


def pattern_terms(pattern: str) -> tuple[dict[str, list[Any]], list[str]]:
    """The match values of a STIX pattern by kind, and the OR terms left out (why each).

    Raises ``UnsupportedPattern`` when the pattern as a whole cannot be matched."""
    try:
        parsed = create_pattern_object(pattern, version="2.1")
    except Exception as exc:  # stix2's parser raises several types for bad syntax
        raise UnsupportedPattern(f"not a valid STIX 2.1 pattern: {exc}") from exc
    match: dict[str, list[Any]] = {}
    skipped: list[str] = []
    for comparison in _disjuncts(parsed):
        try:
            kind, values = _term(comparison)
        except UnsupportedPattern as exc:
            skipped.append(str(exc))
            continue
        bucket = match.setdefault(kind, [])
        bucket.extend(v for v in values if v not in bucket)
    if not match:
        raise UnsupportedPattern("; ".join(skipped) or "no comparison")
    return match, skipped


def _stamp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def import_bundle(text: str | bytes, result: ImportResult | None = None) -> ImportResult:
    """Add the indicators of one STIX 2.1 bundle (JSON) to ``result``. Raises ``ValueError``
    for a document that is not a STIX bundle."""
    result = result or ImportResult()
    try:
        bundle = stix2.parse(text, allow_custom=True, version="2.1")
    except Exception as exc:
        raise ValueError(f"not a STIX 2.1 bundle: {exc}") from exc
    if getattr(bundle, "type", None) != "bundle":
        raise ValueError("not a STIX 2.1 bundle: the top-level object is not a bundle")
    objects = list(getattr(bundle, "objects", None) or [])
    result.objects += len(objects)
    names = {
        o["id"]: o.get("name") for o in objects if o.get("type") == "identity" and o.get("name")
    }
    now = datetime.now(UTC)
    for obj in objects:
        if obj.get("type") != "indicator":
            continue
        ident = obj["id"]
        if obj.get("revoked"):
            result.revoked += 1
            result.indicators.pop(ident, None)
            continue
        previous = result.indicators.get(ident)
        modified = _stamp(obj.get("modified"))
        if previous is not None and (previous.get("modified") or "") >= (modified or ""):
            continue
        if obj.get("pattern_type") != "stix":
            result.unsupported.append(
                {
                    "id": ident,
                    "reason": f"pattern_type {obj.get('pattern_type')!r} (only stix)",
                    "pattern": obj.get("pattern"),
                }
            )
            continue
        try:
            match, skipped = pattern_terms(obj["pattern"])
        except UnsupportedPattern as exc:
            result.unsupported.append({"id": ident, "reason": str(exc), "pattern": obj["pattern"]})
            continue
        for reason in skipped:
            result.unsupported.append(
                {"id": ident, "reason": f"term left out: {reason}", "pattern": obj["pattern"]}
            )
        until = obj.get("valid_until")
        if until is not None and until <= now:
            result.expired += 1
        result.indicators[ident] = {
            "id": ident,
            "name": obj.get("name"),
            "source": names.get(obj.get("created_by_ref")),
            "created_by_ref": obj.get("created_by_ref"),
            "modified": modified,
            "valid_from": _stamp(obj.get("valid_from")),
            "valid_until": _stamp(until),
            "confidence": obj.get("confidence"),
            "labels": list(obj.get("labels") or []),
            "indicator_types": list(obj.get("indicator_types") or []),
            "match": match,
        }
    return result


# --- export --------------------------------------------------------------------------------

#: The default pack's grades, weakest first, and the STIX confidence each exports with.
LEVELS = ("watch", "suspect", "strong")
CONFIDENCE = {"watch": 30, "suspect": 60, "strong": 85}

_NAMESPACE = uuid.UUID("6f1c3a52-9f33-4c49-9d0f-4f6f7d2d8a11")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class _Cluster:
    key: str
    subjects: set[str] = field(default_factory=set)
    first_ns: int = 0
    last_ns: int = 0
    requests: int = 0
    level: int = 0
    evidence: set[str] = field(default_factory=set)
    #: kind -> value -> subjects that used it
    values: dict[str, dict[Any, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )


@dataclass
class ExportResult:
    bundle: stix2.Bundle
    clusters: int = 0
    indicators: int = 0
    #: Payment fingerprints the log holds only masked (keyed hashes another provider cannot
    #: match): not exported.
    masked_payments: int = 0


def _cluster_key(signals: dict[str, Any], subject: str) -> str:
    for name in ("cluster", "behaviour", "family"):
        part = signals.get(name)
        if isinstance(part, dict) and isinstance(part.get("id"), str):
            return f"{name}:{part['id']}"
    return f"subject:{subject}"


def flagged_clusters(
    entries: Iterable[dict[str, Any]], *, min_level: str = "suspect", since_ns: int | None = None
) -> tuple[list[_Cluster], int]:
    """The clusters with decisions graded ``min_level`` or above, and the masked payment
    fingerprints seen in them."""
    floor = LEVELS.index(min_level)
    clusters: dict[str, _Cluster] = {}
    masked = 0
    for entry in entries:
        if kind_of(entry) != "decision":
            continue
        at = event_time_ns(entry)
        if at is None or (since_ns is not None and at < since_ns):
            continue
        facts = decision_facts(entry)
        level = facts["level"]
        if level not in LEVELS or LEVELS.index(level) < floor:
            continue
        inp = entry.get("input") or {}
        subject_doc = inp.get("subject") or {}
        network = inp.get("network") or {}
        request = inp.get("request") or {}
        signals = inp.get("signals") or {}
        subject = str(subject_doc.get("id") or "")
        key = _cluster_key(signals, subject)
        cluster = clusters.get(key)
        if cluster is None:
            cluster = clusters[key] = _Cluster(key, first_ns=at, last_ns=at)
        cluster.subjects.add(subject)
        cluster.first_ns, cluster.last_ns = min(cluster.first_ns, at), max(cluster.last_ns, at)
        cluster.requests += 1
        cluster.level = max(cluster.level, LEVELS.index(level))
        cluster.evidence.update(facts["evidence"])
        prefix = network_prefix(network.get("client_ip"))
        if prefix:
            cluster.values["network"][prefix].add(subject)
        agent = request.get("user_agent")
        if isinstance(agent, str) and agent:
            cluster.values["user_agent"][agent].add(subject)
        payment = subject_doc.get("payment_fingerprint")
        if isinstance(payment, str) and payment:
            if payment.startswith("hmac-sha256:"):
                masked += 1
            else:
                cluster.values["payment"][payment_hash(payment)].add(subject)
        family = (signals.get("family") or {}).get("id")
        if isinstance(family, str) and family:
            cluster.values["prompt_family"][compact_band(family)].add(subject)
    return list(clusters.values()), masked


def _observation(kind: str, value: Any) -> str:
    if kind == "network":
        family = "ipv6-addr" if ":" in value else "ipv4-addr"
        return f"[{family}:value ISSUBSET {_quote(value)}]"
    if kind == "user_agent":
        return (
            "[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = "
            f"{_quote(value)}]"
        )
    if kind == "payment":
        return f"[x-gatekeeper-payment:fingerprint_sha256 = {_quote(value)}]"
    return f"[x-gatekeeper-prompt-family:band = {_quote(value)}]"


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def export_bundle(
    entries: Iterable[dict[str, Any]],
    *,
    producer: str = "gatekeeper",
    min_level: str = "suspect",
    min_subjects: int = 2,
    valid_days: float = 30.0,
    since_ns: int | None = None,
) -> ExportResult:
    """A STIX 2.1 bundle of the clusters a decision log shows flagged: the producer's identity,
    per cluster one indicator per kind of value its subjects shared (prefixes, user agents,
    payment-fingerprint hashes, prompt families) and a grouping that ties them together."""
    clusters, masked = flagged_clusters(entries, min_level=min_level, since_ns=since_ns)
    identity = stix2.Identity(
        id=f"identity--{uuid.uuid5(_NAMESPACE, producer)}",
        name=producer,
        identity_class="organization",
    )
    objects: list[Any] = [identity]
    exported = count = 0
    for cluster in sorted(clusters, key=lambda c: c.key):
        level = LEVELS[cluster.level]
        valid_from = _time(cluster.first_ns)
        valid_until = _time(cluster.last_ns) + timedelta(days=valid_days)
        indicators = []
        for kind in ("network", "user_agent", "payment", "prompt_family"):
            shared = sorted(
                v for v, who in cluster.values.get(kind, {}).items() if len(who) >= min_subjects
            )
            if not shared:
                continue
            indicators.append(
                stix2.Indicator(
                    name=f"{cluster.key}: {kind.replace('_', ' ')}",
                    description=(
                        f"Shared by accounts of a cluster graded {level} by gatekeeper's "
                        f"anti-extraction pack ({len(cluster.subjects)} accounts, "
                        f"{cluster.requests} flagged requests)."
                    ),
                    indicator_types=[
                        "malicious-activity" if level == "strong" else "anomalous-activity"
                    ],
                    labels=["model-distillation", kind],
                    pattern=" OR ".join(_observation(kind, v) for v in shared),
                    pattern_type="stix",
                    valid_from=valid_from,
                    valid_until=valid_until,
                    confidence=CONFIDENCE[level],
                    created_by_ref=identity.id,
                )
            )
        if not indicators:
            continue
        objects.extend(indicators)
        objects.append(
            stix2.Grouping(
                name=f"gatekeeper flagged cluster {cluster.key}",
                context="suspicious-activity",
                object_refs=[i.id for i in indicators],
                created_by_ref=identity.id,
                confidence=CONFIDENCE[level],
                x_gatekeeper_cluster=cluster.key,
                x_gatekeeper_level=level,
                x_gatekeeper_accounts=len(cluster.subjects),
                x_gatekeeper_requests=cluster.requests,
                x_gatekeeper_evidence=sorted(cluster.evidence),
                allow_custom=True,
            )
        )
        exported += 1
        count += len(indicators)
    bundle = stix2.Bundle(objects=objects, allow_custom=True)
    # Parsed back by stix2 (and every pattern by the importer): what another provider reads.
    stix2.parse(bundle.serialize(), allow_custom=True, version="2.1")
    for obj in objects:
        if obj.type == "indicator":
            pattern_terms(obj.pattern)
    return ExportResult(bundle, clusters=exported, indicators=count, masked_payments=masked)
