"""regorus's compiled VM: the embedded engine uses it only where it decides as the interpreter.

The VM (regorus 0.13) decides some constructs differently from the interpreter and OPA; these
tests pin that gatekeeper's rewrite (gatekeeper/policy/vm.py) makes it decide each of them like
the interpreter, that what cannot be rewritten stays on the interpreter, and that the checks
before and while it serves switch a revision to the interpreter when the VM disagrees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import regorus
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.policy import EmbeddedEngine, OpaEngine, PolicySource
from gatekeeper.policy.check import check_source
from gatekeeper.policy.embedded import compile_source, vm_plan
from gatekeeper.policy.vm import Vm, prepare
from tests.policy.conftest import make_input
from tests.policy.opa_server import OpaServer
from tests.policy.test_conformance import CASES, PACK

#: Rules `l` the VM gets wrong as written (the first group) and neighbours that must stay right.
RULES = {
    # else after a body that fails in a loop, at an undefined assignment, or with its value
    "some-in": "l := 1 if { some r in [1, 2]; r == 3 } else := 2",
    "wildcard": "l := 1 if { [1, 2][_] == 3 } else := 2",
    "unbound-index": "l := 1 if { [1, 2][i] == 3 } else := 2",
    "input-wildcard": "l := 1 if { input.xs[_] == 3 } else := 2",
    "undefined-assignment": "l := x if { x := input.t.missing } else := 2",
    "undefined-value": "l := input.t.missing if { true } else := 2",
    "loop-over-rule": (
        "l := 1 if { some r in s; r == 3 } else := 2\ns contains x if some x in [1, 2]"
    ),
    "some-key-value": 'l := 1 if { some k, v in {"a": 1}; v == 3 } else := 2',
    "second-link": "l := 1 if { false } else := 3 if { some r in [1, 2]; r == 3 } else := 2",
    "function": "l := f(input.n)\nf(x) := 1 if { some r in [1, 2]; r == x } else := 2",
    "function-two-args": (
        'l := f(input.n, "k")\n'
        'f(x, "k") := 1 if { x > 3 } else := y if { y := input.t.missing } else := 7'
    ),
    "boolean-head": "l if { some r in [1, 2]; r == 3 } else := false",
    "with-default": "default l := 9\nl := 1 if { input.xs[_] == 3 } else := 2 if input.q",
    "multi-line-value": (
        'l := {\n  "a": input.q, # a comment\n  "b": "x",\n} if {\n  # why\n  input.q\n'
        '} else := {"a": "none"}'
    ),
    "string-values": 'l := "yes" if { input.xs[_] == 3 } else := "no"',
    # constructs the VM already evaluated correctly: the rewrite must not break them
    "plain-conditions": "l := 1 if { input.q } else := 2 if { not input.t } else := 3",
    "assignment-then-test": "l := x if { x := 5; x > 9 } else := 2",
    "no-else": "default l := 2\nl := 1 if { some r in input.xs; r == 3 }",
}
INPUTS: list[dict[str, Any]] = [
    {},
    {"xs": [1], "t": {}, "n": 1},
    {"xs": [3], "q": True, "n": 5},
]


def source(rules: str, revision: str = "t") -> PolicySource:
    return PolicySource(revision, {"a.rego": "package a\n" + rules + "\n"}, {})


def raw_vm(rules: str, doc: dict[str, Any]) -> str:
    """regorus's VM on the module as written, without gatekeeper's rewrite."""
    program = regorus.Program.compile_from_modules(
        "{}", [("a.rego", "package a\n" + rules)], ["data.a.l"]
    )
    vm = regorus.Rvm()
    vm.load_program(program)
    vm.set_data_json("{}")
    vm.set_input_json(orjson.dumps(doc).decode())
    result: str = vm.execute()
    return result


@pytest.mark.parametrize("name", list(RULES))
def test_the_vm_decides_every_else_chain_like_the_interpreter(name: str) -> None:
    policy = source(RULES[name])
    vm = EmbeddedEngine(policy, "data.a.l", check=False)
    interpreter = EmbeddedEngine(policy, "data.a.l", check=False, evaluator="interpreter")
    assert vm.status()["evaluator"] == "vm", vm.status()["vm"]["reason"]
    for doc in INPUTS:
        assert vm.evaluate(doc) == interpreter.evaluate(doc), doc


def test_the_rewrite_is_needed_the_vm_as_written_yields_undefined() -> None:
    """If this fails, regorus fixed its `else`: the rewrite can go (docs/performance.md)."""
    assert raw_vm(RULES["some-in"], {}) == '"<undefined>"'
    assert EmbeddedEngine(source(RULES["some-in"]), "data.a.l", check=False).evaluate({}) == 2


def test_every_stays_on_the_interpreter_which_refuses_what_the_vm_would_allow() -> None:
    rules = 'default l := "refused"\nl := "allowed" if { every r in ["a", "b"] { input.ev[r] } }'
    engine = EmbeddedEngine(source(rules), "data.a.l", check=False)
    status = engine.status()
    assert status["evaluator"] == "interpreter"
    assert "`every`" in status["vm"]["reason"] and "line 3" in status["vm"]["reason"]
    only_a = {"ev": {"a": True}}
    assert engine.evaluate(only_a) == "refused"
    assert orjson.loads(raw_vm(rules, only_a)) == "allowed"  # what the VM would have done


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ("f([x, y]) := 1 if { x > y } else := 2\nl := f([1, 2])", "pattern argument"),
        ("q.r := 1 if { input.q } else := 2\nl := q.r", "reference head"),
    ],
)
def test_else_the_rewrite_cannot_handle_stays_on_the_interpreter(rules: str, reason: str) -> None:
    engine = EmbeddedEngine(source(rules), "data.a.l", check=False)
    assert engine.status()["evaluator"] == "interpreter"
    assert reason in engine.status()["vm"]["reason"]
    assert engine.evaluate({}) == 2


def test_a_decision_the_vm_cannot_make_is_made_by_the_interpreter() -> None:
    """The VM stops after 25,000 instructions; the interpreter has no such limit."""
    rules = "l := count([x | some x in numbers.range(1, input.n); x % 7 == 0])"
    engine = EmbeddedEngine(source(rules), "data.a.l", check=False)
    assert engine.status()["evaluator"] == "vm"
    assert engine.evaluate({"n": 70}) == 10
    assert engine.status()["vm"]["errors"] == 0
    assert engine.evaluate({"n": 70_000}) == 10_000
    assert engine.status()["vm"]["errors"] == 1
    assert engine.status()["evaluator"] == "vm"  # one input too big is no reason to stop


def test_a_vm_that_fails_more_often_than_not_hands_over_to_the_interpreter() -> None:
    rules = "l := count([x | some x in numbers.range(1, input.n); x % 7 == 0])"
    engine = EmbeddedEngine(source(rules), "data.a.l", check=False)
    for _ in range(99):
        assert engine.evaluate({"n": 70_000}) == 10_000
    assert engine.status()["evaluator"] == "vm"
    assert engine.evaluate({"n": 70_000}) == 10_000  # the 100th failure, none decided
    status = engine.status()
    assert status["evaluator"] == "interpreter"
    assert status["vm"]["reason"].startswith("the VM failed on 100 decisions")
    assert status["vm"]["errors"] == 100
    engine.evaluate({"n": 70_000})
    assert engine.status()["vm"]["errors"] == 100  # no more attempts


def test_the_default_pack_is_rewritten_and_compiled_for_the_vm() -> None:
    plan = prepare(PACK.policy_modules, PACK.data, "data.gatekeeper.decision")
    assert plan.program is not None, plan.reason
    rewritten = dict(plan.modules)
    assert "else" not in "".join(
        line.split("#")[0] for text in rewritten.values() for line in text.splitlines()
    )
    report = check_source(PACK)
    assert report.evaluator == "vm" and "embedded evaluator: vm" in report.format()


_signals = st.fixed_dictionaries(
    {
        "available": st.booleans(),
        "cot_elicitation": st.floats(0, 1),
        "template_repetition": st.floats(0, 1),
        "subject": st.fixed_dictionaries(
            {
                "template_count": st.integers(0, 12),
                "reasoning_share": st.floats(0, 1),
                "requests": st.fixed_dictionaries({"1h": st.integers(0, 400)}),
            }
        ),
        "cluster": st.fixed_dictionaries(
            {
                "id": st.one_of(st.none(), st.just("c-1")),
                "size": st.integers(1, 80),
                "template_count": st.integers(0, 12),
                "requests": st.fixed_dictionaries({"1h": st.integers(0, 6000)}),
            }
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    tier=st.sampled_from(["free", "pro", "enterprise", "research", "unknown"]),
    kyc=st.sampled_from(["none", "email", "phone", "payment", "government_id", "business"]),
    country=st.sampled_from(["US", "KP", "", None]),
    signals=_signals,
    flags=st.sampled_from([[], ["distillation_exempt"]]),
    age=st.one_of(st.none(), st.integers(0, 400)),
    hosting=st.booleans(),
)
def test_vm_and_interpreter_decide_the_default_pack_alike(
    tier: str,
    kyc: str,
    country: str | None,
    signals: dict[str, Any],
    flags: list[str],
    age: int | None,
    hosting: bool,
) -> None:
    doc = make_input(tier, kyc, country)
    doc["signals"] = signals
    doc["subject"].update(flags=flags, account_age_days=age)
    doc["network"]["is_hosting"] = hosting
    assert VM_ENGINE.evaluate(doc) == INTERPRETER.evaluate(doc)


VM_ENGINE = EmbeddedEngine(PACK, check=False)
INTERPRETER = EmbeddedEngine(PACK, check=False, evaluator="interpreter")


def _changed_pack() -> PolicySource:
    """The pack with the KYC refusal's status changed: a stand-in for a miscompiled program."""
    modules = dict(PACK.modules)
    modules["gatekeeper/kyc.rego"] = modules["gatekeeper/kyc.rego"].replace(
        '"status": 403', '"status": 401'
    )
    return PolicySource("changed", modules, PACK.data, cases=PACK.cases)


def test_a_vm_that_decides_a_conformance_case_differently_is_not_used() -> None:
    interpreter_of_other_pack = compile_source(_changed_pack(), tests=False)
    plan = vm_plan(PACK, "data.gatekeeper.decision", interpreter_of_other_pack)
    assert plan.program is None
    assert plan.reason.startswith("the VM decides case kyc-")
    assert any(case.id in plan.reason for case in CASES)


async def test_a_sampled_decision_the_vm_gets_wrong_switches_to_the_interpreter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = EmbeddedEngine(PACK, check=False, verify_every=2)
    # This thread's VM now evaluates another program, as a miscompiled one would.
    changed = _changed_pack()
    plan = prepare(changed.policy_modules, changed.data, "data.gatekeeper.decision")
    engine._active.evaluators().vm = Vm(plan, orjson.dumps(changed.data).decode())
    doc = make_input("free", "none", "US")
    first, _ = await engine.evaluate_raw(doc)
    assert first["status"] == 401  # not sampled: the wrong decision goes through
    with caplog.at_level(logging.ERROR, logger="gatekeeper.policy"):
        second, _ = await engine.evaluate_raw(doc)  # the 2nd VM decision is cross-checked
    assert second["status"] == 403  # the interpreter's decision wins
    status = engine.status()
    assert status["evaluator"] == "interpreter"
    assert status["vm"] == {
        "reason": "the VM decided a sampled request differently from the interpreter",
        "decisions": 2,
        "checked": 1,
        "mismatches": 1,
        "errors": 0,
    }
    assert "the interpreter evaluates this revision from now on" in caplog.text
    for _ in range(3):
        assert (await engine.evaluate_raw(doc))[0]["status"] == 403
    assert engine.status()["vm"]["decisions"] == 2


async def test_verification_off_never_consults_the_interpreter() -> None:
    engine = EmbeddedEngine(PACK, check=False, verify_every=0)
    for _ in range(5):
        await engine.evaluate_raw(make_input("pro", "email", "US"))
    assert engine.status()["vm"]["decisions"] == 5
    assert engine.status()["vm"]["checked"] == 0


@pytest.mark.parametrize("name", ["some-in", "undefined-assignment", "undefined-value"])
async def test_the_rewritten_rules_decide_as_opa_does(
    name: str, opa_factory: Callable[..., OpaServer]
) -> None:
    server = opa_factory()
    policy = source(RULES[name], revision=name)
    opa = OpaEngine(server.url, "data.a.l", source=policy, timeout=5.0, check=False)
    await opa.start()
    try:
        vm = EmbeddedEngine(policy, "data.a.l", check=False)
        for doc in INPUTS:
            assert (await vm.evaluate_raw(doc))[0] == (await opa.evaluate_raw(doc))[0]
    finally:
        await opa.aclose()
