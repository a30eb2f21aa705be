"""Prometheus metrics: what an operator sees after real requests through the middleware."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.audit import DecisionRecord
from gatekeeper.middleware import DECISION_ID_HEADER
from gatekeeper.observability import GatekeeperMetrics, classify
from gatekeeper.observability.metrics import STAGE_BUCKETS, Tally
from tests.observability.conftest import Factory, Protected
from tests.servers import free_port

DECISIONS = "gatekeeper_decisions_total"
DECISION_ID = DECISION_ID_HEADER.decode()


def decisions(p: Protected, outcome: str, reason: str) -> float:
    return p.sample(DECISIONS, outcome=outcome, reason=reason)


async def test_decisions_are_counted_by_outcome_and_reason(protected: Factory) -> None:
    async with protected() as p:
        assert (await p.chat("gk-demo-pro")).status_code == 200
        assert (await p.chat("gk-demo-unverified")).status_code == 403
        assert (await p.chat(None)).status_code == 401
        assert (await p.chat("gk-demo-nobody")).status_code == 401
        assert decisions(p, "allow", "none") == 1
        assert decisions(p, "deny", "kyc_insufficient") == 1
        assert decisions(p, "reject", "missing_api_key") == 1
        assert decisions(p, "reject", "invalid_api_key") == 1


async def test_quota_refusals_are_denials_for_quota_exceeded(protected: Factory) -> None:
    async with protected() as p:
        statuses = [(await p.chat("gk-demo-free")).status_code for _ in range(12)]
        assert 429 in statuses
        assert decisions(p, "deny", "quota_exceeded") == statuses.count(429)
        assert decisions(p, "allow", "none") == statuses.count(200)


async def test_stage_latencies_are_histograms_per_stage(protected: Factory) -> None:
    async with protected() as p:
        await p.chat("gk-demo-free")
        await p.chat(None)
        count = "gatekeeper_stage_duration_seconds_count"
        for stage in ("inspect", "locate", "policy", "quota", "shaping"):
            assert p.sample(count, stage=stage) == 1, stage
        # Both requests were identified (one as missing its key) and logged.
        assert p.sample(count, stage="identify") == 2
        assert p.sample(count, stage="log") == 2
        assert p.sample("gatekeeper_app_duration_seconds_count") == 1


def removed_tokens(p: Protected) -> float:
    """Reasoning tokens removed so far, whatever the mode."""
    return sum(
        sample.value
        for metric in p.gk.observability.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "gatekeeper_reasoning_tokens_removed_total"
    )


async def test_reasoning_tokens_removed_are_counted(protected: Factory) -> None:
    async with protected() as p:
        assert removed_tokens(p) == 0
        response = await p.chat("gk-demo-free")  # the demo policy drops a free key's reasoning
        assert response.status_code == 200
        await p.gk.decision_log.flush()
    events = [json.loads(line) for line in p.gk.settings.audit.path.read_text().splitlines()]
    (event,) = [e for e in events if e.get("decision_id") == response.headers[DECISION_ID]]
    removed = event["gatekeeper"]["enforcement"]["reasoning"]["removed_tokens"]
    assert removed > 0
    assert removed_tokens(p) == removed


async def test_quota_store_errors_are_exposed(protected: Factory) -> None:
    async with protected(quota={"storage": f"redis://127.0.0.1:{free_port()}/0"}) as p:
        await p.chat("gk-demo-pro")  # served or refused, as each quota's on_store_error says
        assert p.sample("gatekeeper_quota_store_events_total", event="store_errors") >= 1


def test_refusals_for_a_failing_part_count_as_errors_of_that_part() -> None:
    metrics = GatekeeperMetrics()
    for code in ("quota_store_unavailable", "policy_error", "identity_unavailable"):
        rec = record(decided_by="gatekeeper", result={"allow": False, "reasons": [{"code": code}]})
        metrics.observe(rec, log_ns=1000)
    errors = metrics.registry.get_sample_value
    for component in ("quota_store", "policy_engine", "identity_store"):
        assert errors("gatekeeper_errors_total", {"component": component}) == 1


async def test_metrics_endpoint_is_unprotected_text_exposition(protected: Factory) -> None:
    async with protected() as p:
        await p.chat("gk-demo-pro")
        await p.gk.decision_log.flush()
        response = await p.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        'gatekeeper_decisions_total{outcome="allow",reason="none"} 1.0',
        "gatekeeper_decision_log_written_total",
        "gatekeeper_decision_log_dropped_total 0.0",
        "gatekeeper_decision_log_queue_depth",
        "gatekeeper_policy_revision_info{",
        'gatekeeper_policy_evaluator_info{evaluator="vm"} 1.0',
        'gatekeeper_policy_vm_events_total{event="mismatches"} 0.0',
        "gatekeeper_build_info{",
        "gatekeeper_stage_duration_seconds_bucket{",
    ):
        assert name in text, name


async def test_metrics_on_a_separate_port(protected: Factory) -> None:
    observability = {"metrics_path": "", "metrics_port": 0}
    async with protected(observability=observability) as p:
        await p.chat("gk-demo-pro")
        assert (await p.client.get("/metrics")).status_code == 401  # not on the API port
        port = p.gk.observability.listener_port
        assert port is not None
        async with httpx.AsyncClient() as other:
            response = await other.get(f"http://127.0.0.1:{port}/metrics")
    assert 'gatekeeper_decisions_total{outcome="allow",reason="none"} 1.0' in response.text


def record(**fields: object) -> DecisionRecord:
    return DecisionRecord(decision_id="d", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        (record(result={"allow": True, "reasons": []}), ("allow", "none")),
        (
            record(result={"allow": False, "reasons": [{"code": "kyc_insufficient"}]}),
            ("deny", "kyc_insufficient"),
        ),
        (
            record(result={"allow": False, "shadow": True, "reasons": [{"code": "new_rule"}]}),
            ("shadow_deny", "new_rule"),
        ),
        (
            record(result={"allow": True}, quotas=[{"name": "requests", "refused": True}]),
            ("deny", "quota_exceeded"),
        ),
        (
            record(
                decided_by="gatekeeper",
                result={"allow": False, "reasons": [{"code": "policy_error"}]},
            ),
            ("reject", "policy_error"),
        ),
        (record(), ("deny", "none")),
    ],
    ids=["allow", "deny", "shadow", "quota", "reject", "no-result-is-not-an-allow"],
)
def test_outcome_classification(rec: DecisionRecord, expected: tuple[str, str]) -> None:
    assert classify(rec) == expected


@given(st.lists(st.integers(min_value=0, max_value=3 * 10**9), max_size=60))
def test_tally_buckets_count_values_at_or_below_each_bound(values: list[int]) -> None:
    tally = Tally(STAGE_BUCKETS)
    for value in values:
        tally.observe_ns(value)
    buckets = tally.buckets()
    for (le, count), bound in zip(buckets, STAGE_BUCKETS, strict=False):
        assert float(le) == bound
        assert count == sum(1 for v in values if v <= round(bound * 1e9))
    assert buckets[-1] == ("+Inf", len(values))
    assert tally.sum_ns == sum(values)
