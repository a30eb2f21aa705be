"""Conformance: the same suite on every engine present, and the engines compared field by field.

The suite is the pack's Rego unit tests (run by `opa test` and by the embedded runner) and its
table of input → expected decision cases (policies/conformance/cases.yaml). Any divergence
between the engines fails and names the case and its rule, or the input and the fields.
The embedded engine runs twice: as configured by default (regorus's compiled VM, which it uses
for the default pack) and with ``evaluator="interpreter"``; both are compared with OPA.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.policy import (
    Case,
    EmbeddedEngine,
    OpaEngine,
    PolicySource,
    diff_values,
    load_policy,
    parse_cases,
    run_tests,
)
from gatekeeper.policy.conformance import judge
from tests.policy.conftest import POLICIES, make_input
from tests.policy.opa_server import OpaServer, find_opa

module_loop = pytest.mark.asyncio(loop_scope="module")

PACK = load_policy(POLICIES)
CASES = parse_cases(PACK.cases)
ENGINES = ["embedded", "interpreter", "opa"]
#: The embedded evaluators compared with OPA.
EMBEDDED = ["embedded", "interpreter"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines(opa_factory: Callable[..., OpaServer]) -> AsyncIterator[dict[str, Any]]:
    """The engines with the default pack: embedded (VM and interpreter), and a real OPA server
    it was pushed to."""
    server = opa_factory()
    opa = OpaEngine(server.url, source=PACK, timeout=5.0)  # no timeouts under test here
    await opa.start()
    yield {
        "embedded": EmbeddedEngine(PACK),
        "interpreter": EmbeddedEngine(PACK, evaluator="interpreter"),
        "opa": opa,
    }
    await opa.aclose()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Any:
    """Each engine in turn (the OPA one skips, saying why, where there is no opa)."""
    if request.param == "opa":
        return request.getfixturevalue("engines")["opa"]
    if request.param == "interpreter":
        return EmbeddedEngine(PACK, evaluator="interpreter")
    return EmbeddedEngine(PACK)


def test_the_default_pack_is_evaluated_by_the_vm_by_default() -> None:
    """Otherwise the comparisons below would compare the interpreter with OPA twice."""
    assert EmbeddedEngine(PACK).status()["evaluator"] == "vm"
    interpreter = EmbeddedEngine(PACK, evaluator="interpreter").status()
    assert interpreter["evaluator"] == "interpreter"
    assert interpreter["vm"]["reason"] == "policy.evaluator is 'interpreter'"


def test_every_rule_module_and_refusal_code_has_a_case() -> None:
    """The table covers every rule: each module is named by a case, each reason code expected."""
    covered = {case.rule.split(".")[0] for case in CASES}
    modules = {
        "decision" if Path(n).stem == "decision" else Path(n).stem for n in PACK.policy_modules
    }
    assert modules - covered == set(), "modules without a conformance case"
    codes = set(re.findall(r'"code":\s*"(\w+)"', "\n".join(PACK.policy_modules.values())))
    expected = json.dumps([c.expect for c in CASES])
    assert {code for code in codes if code not in expected} == set()


def test_rego_unit_tests_agree_between_opa_test_and_the_embedded_runner(opa_bin: str) -> None:
    embedded = {r.full_name: r.outcome for r in run_tests(PACK)}
    out = subprocess.run(
        [opa_bin, "test", "--format", "json", str(POLICIES)], capture_output=True, check=False
    )
    assert out.returncode in (0, 2), out.stderr.decode()
    opa = {}
    for r in json.loads(out.stdout):
        outcome = "ERROR" if r.get("error") else "FAIL" if r.get("fail") else "PASS"
        opa[f"{r['package']}.{r['name']}"] = "SKIPPED" if r.get("skip") else outcome
    diverging = {
        name: (embedded.get(name), opa.get(name))
        for name in set(embedded) | set(opa)
        if embedded.get(name) != opa.get(name)
    }
    assert diverging == {}, "Rego tests whose outcome differs (embedded, opa)"
    assert set(embedded.values()) == {"PASS"} and len(embedded) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@module_loop
async def test_case_decides_as_expected(case: Case, engine: Any) -> None:
    value, revision = await engine.evaluate_raw(case.input)
    result = judge(case, value, revision)
    assert result.ok, f"{engine.name}: {result.describe()}"
    assert revision == PACK.revision


def _compare(a: Any, b: Any, label: str) -> None:
    fields = diff_values(a, b)
    assert fields == [], f"engines diverge on {label}: " + "; ".join(fields)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@module_loop
async def test_engines_decide_each_case_identically(case: Case, engines: dict[str, Any]) -> None:
    opa, _ = await engines["opa"].evaluate_raw(case.input)
    for name in EMBEDDED:
        embedded, _ = await engines[name].evaluate_raw(case.input)
        _compare(embedded, opa, f"{name}, case {case.id} (rule {case.rule})")


GRID = list(
    itertools.product(
        ["free", "pro", "enterprise", "platinum"],
        ["none", "email", "phone", "payment", "government_id", "business"],
        ["US", "KP", "", None],
        [None, "openai_chat"],
        [None, "o1"],
    )
)


@module_loop
async def test_engines_agree_on_a_grid_of_subjects_and_places(engines: dict[str, Any]) -> None:
    diverging = []
    for tier, kyc, country, dialect, org in GRID:
        doc = make_input(tier, kyc, country)
        doc["request"]["dialect"] = dialect
        doc["subject"]["org"] = org
        opa, _ = await engines["opa"].evaluate_raw(doc)
        for name in EMBEDDED:
            embedded, _ = await engines[name].evaluate_raw(doc)
            if fields := diff_values(embedded, opa):
                diverging.append(f"{name} {(tier, kyc, country, dialect, org)}: {fields[:3]}")
    assert diverging == [], f"{len(diverging)} of {len(GRID)} inputs diverge"


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
inputs = st.fixed_dictionaries(
    {
        "tier": st.one_of(st.sampled_from(["free", "pro", "enterprise"]), _text),
        "kyc": st.sampled_from(["none", "email", "phone", "payment", "government_id", "business"]),
        "country": st.one_of(st.none(), st.sampled_from(["US", "KP", "CU", "DE", ""]), _text),
        "id": _text,
        "org": st.one_of(st.none(), _text),
        "tokens": st.integers(min_value=0, max_value=10**9),
        "dialect": st.sampled_from([None, "openai_chat", "openai_responses", "anthropic_messages"]),
        "hosting": st.booleans(),
        "signals": st.one_of(
            st.just({}),
            st.fixed_dictionaries(
                {
                    "available": st.booleans(),
                    "cot_elicitation": st.floats(0, 1),
                    "template_repetition": st.floats(0, 1),
                    "subject": st.fixed_dictionaries(
                        {
                            "template_count": st.integers(0, 12),
                            "account_age_days": st.floats(0, 900),
                        }
                    ),
                    "cluster": st.fixed_dictionaries(
                        {
                            "id": _text,
                            "size": st.integers(1, 60),
                            "template_count": st.integers(0, 12),
                        }
                    ),
                }
            ),
        ),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(facts=inputs)
@module_loop
async def test_engines_agree_on_any_input(facts: dict[str, Any], engines: dict[str, Any]) -> None:
    """Property: for any contract-shaped input, every engine returns the same decision value."""
    doc = make_input(facts["tier"], facts["kyc"], facts["country"])
    doc["subject"].update(id=facts["id"], org=facts["org"])
    doc["request"].update(dialect=facts["dialect"], estimated_tokens=facts["tokens"])
    doc["network"]["is_hosting"] = facts["hosting"]
    doc["signals"] = facts["signals"]
    opa, _ = await engines["opa"].evaluate_raw(doc)
    for name in EMBEDDED:
        embedded, _ = await engines[name].evaluate_raw(doc)
        _compare(embedded, opa, f"{name}, input {facts}")


@module_loop
async def test_a_diverging_engine_is_reported_by_field_and_case(tmp_path: Path) -> None:
    """The comparison itself: a changed rule shows up as the fields that differ."""
    changed = dict(PACK.modules)
    changed["gatekeeper/kyc.rego"] = changed["gatekeeper/kyc.rego"].replace(
        '"status": 403', '"status": 401'
    )
    other = EmbeddedEngine(PolicySource("changed", changed, PACK.data), check=False)
    case = next(c for c in CASES if c.id == "kyc-none-is-403-with-step-up")
    a, _ = await EmbeddedEngine(PACK).evaluate_raw(case.input)
    b, _ = await other.evaluate_raw(case.input)
    with pytest.raises(
        AssertionError, match=r"case kyc-none.*rule kyc.refusals.*status: 403 != 401"
    ):
        _compare(a, b, f"case {case.id} (rule {case.rule})")


def test_opa_is_found_or_the_skip_says_why() -> None:
    from tests.policy.opa_server import skip_reason

    assert find_opa() is not None or "opa" in skip_reason()
