"""Scrape-time collectors: state that is read when Prometheus asks, never per request.

The decision log's queue depth, capacity, written and dropped counts; the policy revision; the
counters the parts keep themselves (the engine's errors by kind, the quota store's outage
counters, the GeoIP database's lookup errors and reloads, the runtime's ``counters``); and the
process (CPU, memory, file descriptors). All are read from the parts ``Observability`` is given
(``ObservedParts``): what a part does not offer is left out, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gatekeeper.observability.observer import ObservedParts


class RuntimeCollector(Collector):
    """Scrape-time state of the runtime's parts: decision-log queue, policy revision,
    counters."""

    def __init__(self, parts_ref: Callable[[], ObservedParts | None]) -> None:
        self._ref = parts_ref

    def describe(self) -> Iterable[Metric]:
        return []  # collected on demand; nothing to describe in advance

    def collect(self) -> Iterator[Metric]:
        parts = self._ref()
        if parts is None:
            return
        from gatekeeper._version import __version__

        build = GaugeMetricFamily(
            "gatekeeper_build_info", "gatekeeper version.", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build
        policy = GaugeMetricFamily(
            "gatekeeper_policy_revision_info",
            "The policy revision being enforced.",
            labels=["engine", "revision"],
        )
        policy.add_metric([parts.engine.name, _safe_revision(parts)], 1)
        yield policy
        yield from _decision_log_metrics(parts.decision_log)
        yield from _part_counters(parts)
        yield _counters(
            "gatekeeper_runtime_events",
            "Events the runtime counts (e.g. policy_errors), by name.",
            "event",
            sorted(parts.counters.items()),
        )


def _part_counters(parts: ObservedParts) -> Iterator[Metric]:
    """Counters the parts keep themselves: the engine's ``status()["errors"]``, the GeoIP
    database's and, when it keeps them (the failover layer), the quota store's ``counters``."""
    try:
        state = parts.engine.status()
    except Exception:
        state = {}
    yield from _evaluator_metrics(state)
    yield from _reload_metrics(state)
    geo = parts.geo
    for name, documentation, label, counts in (
        (
            "gatekeeper_policy_engine_errors",
            "Policy engine failures by kind (each one refused a request).",
            "kind",
            state.get("errors"),
        ),
        (
            "gatekeeper_geoip_events",
            "GeoIP database events: lookup_errors (each address treated as unknown), reloads, "
            "reload_failures (a changed file refused, the last good one kept).",
            "event",
            geo.counters if geo is not None else None,
        ),
        (
            "gatekeeper_quota_store_events",
            "What the quota store counted (store errors, fallbacks), by event.",
            "event",
            getattr(parts.quotas, "counters", None),
        ),
    ):
        if isinstance(counts, dict):  # a part that keeps none is left out
            yield _counters(name, documentation, label, sorted(counts.items()))


def _counters(
    name: str, documentation: str, label: str, samples: Iterable[tuple[object, object]]
) -> CounterMetricFamily:
    """A counter family labelled ``label``, one sample per ``(label value, count)`` pair whose
    count is a number (a part's status may hold anything)."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in samples:
        if isinstance(value, int | float):
            family.add_metric([str(key)], value)
    return family


def _reload_metrics(state: dict[str, Any]) -> Iterator[Metric]:
    """Hot reload's outcomes (``ReloadingEngine.status()["reload"]``), when it is on."""
    reload = state.get("reload")
    if not isinstance(reload, dict):
        return
    outcomes = (("activated", "reloads"), ("rejected", "reload_failures"))
    yield _counters(
        "gatekeeper_policy_reloads",
        "New policy revisions found by hot reload: activated, or rejected (the last good "
        "revision kept serving).",
        "outcome",
        [(outcome, reload.get(key)) for outcome, key in outcomes],
    )


def _evaluator_metrics(state: dict[str, Any]) -> Iterator[Metric]:
    """The embedded engine's evaluator (VM or interpreter) and the VM's cross-checks."""
    evaluator = state.get("evaluator")
    vm = state.get("vm")
    if not isinstance(evaluator, str) or not isinstance(vm, dict):
        return
    info = GaugeMetricFamily(
        "gatekeeper_policy_evaluator_info",
        "How the embedded engine evaluates the active revision: vm or interpreter.",
        labels=["evaluator"],
    )
    info.add_metric([evaluator], 1)
    yield info
    yield _counters(
        "gatekeeper_policy_vm_events",
        "The compiled VM's decisions cross-checked by the interpreter, the mismatches found "
        "(each switches the revision to the interpreter) and the decisions it failed to make.",
        "event",
        [(name, vm.get(name)) for name in ("checked", "mismatches", "errors")],
    )


def _safe_revision(parts: ObservedParts) -> str:
    try:
        return str(parts.engine.revision)
    except Exception:  # a reloading engine must not break the scrape
        return ""


def _decision_log_metrics(decision_log: Any) -> Iterator[Metric]:
    depth = _queue_depth(decision_log)
    if depth is not None:
        gauge = GaugeMetricFamily(
            "gatekeeper_decision_log_queue_depth", "Decision events waiting to be written."
        )
        gauge.add_metric([], depth)
        yield gauge
    capacity = getattr(decision_log, "_queue_size", None)
    if isinstance(capacity, int):
        gauge = GaugeMetricFamily(
            "gatekeeper_decision_log_queue_capacity", "Decision events the queue can hold."
        )
        gauge.add_metric([], capacity)
        yield gauge
    for attr, help_text in (
        ("written", "Decision events written to the sink."),
        ("dropped", "Decision events dropped (queue full or sink failure); see gap records."),
    ):
        value = getattr(decision_log, attr, None)
        if isinstance(value, int):
            counter = CounterMetricFamily(f"gatekeeper_decision_log_{attr}", help_text)
            counter.add_metric([], value)
            yield counter
    witness = getattr(decision_log, "witness", None)
    for attr, help_text in (
        ("published", "Checkpoints published to the decision log's witness."),
        ("failures", "Failed attempts to publish a checkpoint to the witness (retried)."),
        ("dropped", "Checkpoints never published to the witness (buffer full, or shutdown)."),
    ):
        value = getattr(witness, attr, None) if witness is not None else None
        if isinstance(value, int):
            counter = CounterMetricFamily(f"gatekeeper_decision_log_witness_{attr}", help_text)
            counter.add_metric([], value)
            yield counter


def _queue_depth(decision_log: Any) -> int | None:
    """The log's queue depth: its ``queue_depth`` if it has one, else its queue's size."""
    depth = getattr(decision_log, "queue_depth", None)
    if callable(depth):
        depth = depth()
    if isinstance(depth, int):
        return depth
    queue = getattr(decision_log, "_queue", None)
    if queue is None:
        return 0
    qsize = getattr(queue, "qsize", None)
    return int(qsize()) if callable(qsize) else None


def add_process_metrics(registry: CollectorRegistry) -> None:
    """Process CPU, memory and file descriptors, as the default registry has them."""
    ProcessCollector(registry=registry)
