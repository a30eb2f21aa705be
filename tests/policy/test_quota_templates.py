"""Quota templates: a decision's quotas without key or cost, filled in from the input.

Every engine validates its decision with the input as context, so what is enforced and logged is
the same whichever engine evaluated the policy (the OPA side: test_conformance.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.contract import Decision
from gatekeeper.errors import InvalidDecisionError
from gatekeeper.policy import decision_from_value
from gatekeeper.policy.engine import decision_from_json
from gatekeeper.policy.quota_templates import resolve_quotas
from tests.policy.conftest import make_input

REQUESTS = {"name": "requests", "unit": "requests", "capacity": 10, "rate": 10, "period": 60}
TOKENS = {"name": "tokens", "unit": "tokens", "capacity": 1000, "rate": 1000, "period": 60}
MONTH = {"name": "month", "unit": "tokens", "kind": "window", "window": "month",
         "capacity": 10**6, "scope": "org"}  # fmt: skip
REASONING = {"name": "rt", "unit": "reasoning_tokens", "capacity": 100, "rate": 1, "period": 60}
CLUSTER = {"name": "cr", "unit": "requests", "capacity": 5, "rate": 5, "period": 60,
           "scope": "cluster"}  # fmt: skip


def doc(**changes: Any) -> dict[str, Any]:
    base = make_input("pro", "government_id", "DE")
    base["subject"].update(id="s1", org="acme")
    base["request"].update(dialect="openai_chat", estimated_tokens=700)
    for section, values in changes.items():
        base[section] = {**base.get(section, {}), **values}
    return base


def allowed(*quotas: dict[str, Any], mode: str = "summary") -> dict[str, Any]:
    return {"allow": True, "quotas": list(quotas), "reasoning": {"mode": mode}}


def by_name(decision: Decision) -> dict[str, Any]:
    return {q.name: q for q in decision.quotas}


def test_keys_follow_the_scope() -> None:
    signals = {"available": True, "cluster": {"id": "c-9", "size": 3}}
    d = decision_from_value(allowed(REQUESTS, MONTH, CLUSTER), doc(signals=signals))
    assert [q.key for q in d.quotas] == ["subject:s1:requests", "org:acme:month", "cluster:c-9:cr"]
    assert [q.scope for q in d.quotas] == ["subject", "org", "cluster"]


@pytest.mark.parametrize("org", [None, ""])
def test_without_an_org_the_org_quota_is_the_subjects_own(org: str | None) -> None:
    d = decision_from_value(allowed(MONTH), doc(subject={"org": org}))
    assert d.quotas[0].key == "subject:s1:month"


def test_without_a_cluster_the_cluster_quota_is_the_subjects_own() -> None:
    d = decision_from_value(allowed(CLUSTER), doc())
    assert d.quotas[0].key == "subject:s1:cr"


def test_costs_follow_the_unit() -> None:
    d = decision_from_value(allowed(REQUESTS, TOKENS, MONTH, REASONING), doc())
    assert {q.name: q.cost for q in d.quotas} == {
        "requests": 1, "tokens": 700, "month": 700, "rt": 700,
    }  # fmt: skip


def test_token_quotas_only_apply_to_model_calls() -> None:
    d = decision_from_value(allowed(REQUESTS, TOKENS, REASONING), doc(request={"dialect": None}))
    assert list(by_name(d)) == ["requests"]


def test_reasoning_token_quotas_only_apply_when_reasoning_is_exposed() -> None:
    d = decision_from_value(allowed(REQUESTS, REASONING, mode="drop"), doc())
    assert list(by_name(d)) == ["requests"]
    # A decision that leaves the mode out exposes nothing either (the contract's default).
    d = decision_from_value({"allow": True, "quotas": [REQUESTS, REASONING]}, doc())
    assert list(by_name(d)) == ["requests"]


def test_explicit_key_and_cost_are_kept() -> None:
    quota = {**TOKENS, "key": "team:red:tokens", "cost": 3}
    d = decision_from_value(allowed(quota), doc(request={"dialect": None}))
    assert (d.quotas[0].key, d.quotas[0].cost) == ("team:red:tokens", 3)
    only_key = {**TOKENS, "key": "team:red:tokens"}
    d = decision_from_value(allowed(only_key), doc())
    assert (d.quotas[0].key, d.quotas[0].cost) == ("team:red:tokens", 700)


def test_json_and_value_paths_agree() -> None:
    import orjson

    value = allowed(REQUESTS, TOKENS, MONTH, REASONING)
    input_doc = doc()
    assert decision_from_json(orjson.dumps(value), input_doc) == decision_from_value(
        value, input_doc
    )


def test_a_template_without_an_input_is_invalid() -> None:
    # A recorded decision (the log) must carry its keys: nothing to fill them from.
    with pytest.raises(InvalidDecisionError, match=r"quotas\.0\.key"):
        decision_from_value(allowed(REQUESTS))


def test_malformed_templates_are_still_rejected() -> None:
    with pytest.raises(InvalidDecisionError, match="scope"):
        decision_from_value(allowed({**REQUESTS, "scope": "galaxy"}), doc())
    with pytest.raises(InvalidDecisionError, match="name"):
        decision_from_value(allowed({"unit": "requests", "capacity": 1}), doc())
    with pytest.raises(InvalidDecisionError, match="capacity"):
        decision_from_value(allowed({"name": "x", "unit": "requests"}), doc())


@given(
    subject=st.text(min_size=1, max_size=8),
    org=st.one_of(st.none(), st.text(max_size=8)),
    cluster=st.one_of(st.none(), st.text(max_size=8)),
    dialect=st.sampled_from([None, "openai_chat"]),
    mode=st.sampled_from(["drop", "summary", "full"]),
    tokens=st.integers(min_value=0, max_value=10**9),
)
def test_every_resolved_quota_is_keyed_on_its_owner(
    subject: str, org: str | None, cluster: str | None, dialect: str | None, mode: str, tokens: int
) -> None:
    input_doc = {
        "subject": {"id": subject, "org": org},
        "request": {"dialect": dialect, "estimated_tokens": tokens},
        "signals": {"cluster": {"id": cluster}},
    }
    out = resolve_quotas([REQUESTS, TOKENS, MONTH, REASONING, CLUSTER], input_doc, mode)
    owners = {
        "subject": f"subject:{subject}",
        "org": f"org:{org}" if org else f"subject:{subject}",
        "cluster": f"cluster:{cluster}" if cluster is not None else f"subject:{subject}",
    }
    for quota in out:
        assert quota["key"] == f"{owners[quota.get('scope', 'subject')]}:{quota['name']}"
        assert quota["cost"] == (1 if quota["unit"] == "requests" else tokens)
    names = {q["name"] for q in out}
    assert ("tokens" in names) == (dialect is not None)
    assert ("rt" in names) == (dialect is not None and mode != "drop")
