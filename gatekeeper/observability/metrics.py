"""Prometheus metrics, recorded from each finished ``DecisionRecord``.

The request path only does arithmetic on plain Python lists and dicts: a stage timing is one
``bisect`` and two additions, a decision one dict increment. prometheus-client's own metric
objects take a lock and walk their buckets in Python on every observation (about 3 µs each,
some ten per request); here the work is done when Prometheus scrapes, by ``collect()``, which
turns the tallies into metric families. Everything is written from the event-loop thread; a
scrape from the separate metrics listener's thread only reads, and at worst sees one request
half-counted.

Each ``Gatekeeper`` owns its own ``CollectorRegistry`` (two instances in one process, as in tests,
do not collide); pass ``registry=prometheus_client.REGISTRY`` to add to the global one instead.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gatekeeper.audit import DecisionRecord

#: Buckets for gatekeeper's own stages (seconds): ten microseconds to a second.
STAGE_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
#: Buckets for the app or upstream (seconds): model calls take milliseconds to minutes.
APP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: ``record.metrics`` keys (OPA-style names) and the stage label they are reported under.
STAGE_NAMES = {
    "timer_gatekeeper_identify_ns": "identify",
    "timer_gatekeeper_inspect_ns": "inspect",
    "timer_gatekeeper_locate_ns": "locate",
    "timer_rego_query_eval_ns": "policy",
    "timer_gatekeeper_quota_ns": "quota",
    "timer_gatekeeper_shape_ns": "shaping",
}
APP_TIMER = "timer_gatekeeper_app_ns"

#: Reason codes of refusals gatekeeper makes because a part failed: the part, for the errors metric.
ERROR_REASONS = {
    "policy_error": "policy_engine",
    "identity_unavailable": "identity_store",
    "quota_store_unavailable": "quota_store",
}
#: The proxy's ``upstream_error`` codes that are failures of the upstream (a client that went
#: away, ``client_disconnected``, is not).
UPSTREAM_ERRORS = {
    "upstream_unreachable": "upstream_connect",
    "upstream_timeout": "upstream_timeout",
    "upstream_protocol_error": "upstream_protocol",
}


def stage_name(timer: str) -> str:
    """The stage label for a ``record.metrics`` key (unknown keys keep a readable name)."""
    known = STAGE_NAMES.get(timer)
    if known is not None:
        return known
    name = timer.removeprefix("timer_").removeprefix("gatekeeper_").removesuffix("_ns")
    return name or timer


def classify(record: DecisionRecord) -> tuple[str, str]:
    """``(outcome, reason)`` of a finished request, as the decisions metric counts it.

    Outcomes: ``allow`` (passed to the app), ``deny`` (the policy, or a quota it set, refused),
    ``shadow_deny`` (the policy refused in shadow mode; the request went through), ``reject``
    (gatekeeper refused without a valid decision: credentials, input, or a failing part).
    The reason is the primary reason code, ``none`` when there is none.
    """
    result = record.result or {}
    reasons = result.get("reasons") or ()
    first = reasons[0] if reasons else None
    reason = str(first.get("code") or "none") if isinstance(first, dict) else "none"
    if record.decided_by != "policy":
        return "reject", reason
    for quota in record.quotas:
        if quota.get("refused"):
            return "deny", "quota_exceeded"
    if result.get("allow") is True:
        return "allow", reason
    if result.get("shadow") is True:
        return "shadow_deny", reason
    return "deny", reason


class Tally:
    """A histogram's counts in nanoseconds: one bucket index found by bisection per observation."""

    __slots__ = ("bounds_ns", "counts", "sum_ns")

    def __init__(self, bounds_seconds: tuple[float, ...]) -> None:
        self.bounds_ns = [round(b * 1e9) for b in bounds_seconds]
        self.counts = [0] * (len(bounds_seconds) + 1)  # the last one is +Inf
        self.sum_ns = 0

    def observe_ns(self, nanos: int) -> None:
        self.counts[bisect_left(self.bounds_ns, nanos)] += 1
        self.sum_ns += nanos

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs as Prometheus expects them."""
        out: list[tuple[str, float]] = []
        total = 0
        counts = list(self.counts)  # one snapshot, whatever the loop does meanwhile
        for bound, count in zip(self.bounds_ns, counts, strict=False):
            total += count
            out.append((_le(bound / 1e9), total))
        out.append(("+Inf", total + counts[-1]))
        return out


def _le(seconds: float) -> str:
    return repr(float(seconds))


class GatekeeperMetrics(Collector):
    """The request-path metrics of one gatekeeper instance (a collector in its registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.decisions: dict[tuple[str, str], int] = {}
        self.stages: dict[str, Tally] = {}
        self.app = Tally(APP_BUCKETS)
        # Known components start at zero, so rate() and alerts work before the first failure.
        components = [*ERROR_REASONS.values(), *UPSTREAM_ERRORS.values(), "shaping", "app"]
        self.errors: dict[str, int] = dict.fromkeys(components, 0)
        self.reasoning_removed: dict[str, int] = {}
        self.upstream_responses: dict[str, int] = {}
        # Stage names by timer key, so the per-request loop does one dict lookup.
        self._stage_of: dict[str, Tally] = {}
        for timer in STAGE_NAMES:
            self._tally(timer)
        self._log = self.stages.setdefault("log", Tally(STAGE_BUCKETS))
        self.registry.register(self)

    def _tally(self, timer: str) -> Tally:
        tally = self.stages.setdefault(stage_name(timer), Tally(STAGE_BUCKETS))
        self._stage_of[timer] = tally
        return tally

    def observe(self, record: DecisionRecord, log_ns: int) -> tuple[str, str]:
        """Record one finished request (``log_ns``: time taken to queue its decision event);
        returns its ``(outcome, reason)``."""
        self._log.observe_ns(log_ns)
        stage_of = self._stage_of
        for timer, nanos in record.metrics.items():
            if timer == APP_TIMER:
                self.app.observe_ns(nanos)
                continue
            tally = stage_of.get(timer)
            if tally is None:
                tally = self._tally(timer)
            tally.observe_ns(nanos)
        key = classify(record)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        if key[0] == "reject" and key[1] in ERROR_REASONS:
            self.error(ERROR_REASONS[key[1]])
        reasoning = record.reasoning
        if reasoning is not None:
            removed = reasoning.get("removed_tokens") or 0
            if removed:
                mode = str(reasoning.get("mode"))
                self.reasoning_removed[mode] = self.reasoning_removed.get(mode, 0) + removed
            if reasoning.get("aborted"):
                self.error("shaping")
        if record.upstream_status is not None:
            cls = f"{record.upstream_status // 100}xx"
            self.upstream_responses[cls] = self.upstream_responses.get(cls, 0) + 1
        if record.upstream_error is not None:
            component = UPSTREAM_ERRORS.get(record.upstream_error)
            if component is not None:
                self.error(component)
        if record.error is not None and record.error.get("code") == "app_error":
            self.error("app")  # the app raised (the client got 500 app_error, or a cut stream)
        return key

    def error(self, component: str) -> None:
        """Count one failure of ``component``."""
        self.errors[component] = self.errors.get(component, 0) + 1

    def describe(self) -> list[Metric]:
        return []  # families are built at collection; nothing to declare in advance

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "gatekeeper_decisions",
            "Requests decided, by outcome (allow, deny, shadow_deny, reject) and primary reason.",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), value in list(self.decisions.items()):
            decisions.add_metric([outcome, reason], value)
        yield decisions
        stages = HistogramMetricFamily(
            "gatekeeper_stage_duration_seconds",
            "Time spent in each gatekeeper stage of a request.",
            labels=["stage"],
        )
        for stage, tally in list(self.stages.items()):
            stages.add_metric([stage], tally.buckets(), tally.sum_ns / 1e9)
        yield stages
        app = HistogramMetricFamily(
            "gatekeeper_app_duration_seconds",
            "Time the protected app or upstream took, shaping included, up to the last byte.",
        )
        app.add_metric([], self.app.buckets(), self.app.sum_ns / 1e9)
        yield app
        yield _counter(
            "gatekeeper_errors",
            "Failures of a part, by component (policy_engine, identity_store, quota_store, "
            "upstream_connect, upstream_timeout, upstream_protocol, shaping).",
            "component",
            self.errors,
        )
        yield _counter(
            "gatekeeper_reasoning_tokens_removed",
            "Reasoning tokens withheld from clients by response shaping, by reasoning mode.",
            "mode",
            self.reasoning_removed,
        )
        yield _counter(
            "gatekeeper_upstream_responses",
            "Responses received from the upstream (reverse-proxy mode), by status class.",
            "status_class",
            self.upstream_responses,
        )


def _counter(name: str, documentation: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in list(values.items()):
        family.add_metric([key], value)
    return family
