"""The embedded engine's cache of validated decisions (``policy.engine.DecisionCache``).

Whatever the cache holds, a request gets exactly the decision ``decision_from_json`` makes of the
policy's JSON for that request's input: the quota templates' keys and costs are its own, token
quotas apply as its dialect says, and what does not validate fails as it would uncached.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatekeeper.contract import Decision
from gatekeeper.errors import InvalidDecisionError
from gatekeeper.policy import EmbeddedEngine, PolicySource
from gatekeeper.policy.engine import DecisionCache, decision_from_json
from tests.policy.conftest import make_input
from tests.policy.test_quota_templates import CLUSTER, MONTH, REASONING, REQUESTS, TOKENS

COHORT = {"name": "budget", "unit": "reasoning_tokens", "capacity": 9, "scope": "cohort",
          "cohort": "young/other"}  # fmt: skip
FIXED = {**TOKENS, "name": "fixed", "key": "team:red:tokens", "cost": 3}


def decision_json(*quotas: dict[str, Any], mode: str = "summary", allow: bool = True) -> str:
    """A decision as regorus returns it: indented JSON text."""
    value: dict[str, Any] = {"allow": allow, "quotas": list(quotas), "reasoning": {"mode": mode}}
    if not allow:
        value |= {"status": 403, "reasons": [{"code": "no", "message": "refused"}]}
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def input_doc(
    subject: str = "s1",
    org: str | None = "acme",
    cluster: str | None = None,
    dialect: str | None = "openai_chat",
    tokens: Any = 700,
) -> dict[str, Any]:
    doc = make_input("pro", "government_id", "DE")
    doc["subject"].update(id=subject, org=org)
    doc["request"].update(dialect=dialect, estimated_tokens=tokens)
    doc["signals"] = {"available": True, "cluster": {"id": cluster}}
    return doc


RAWS = [
    decision_json(),
    decision_json(REQUESTS, TOKENS, MONTH, REASONING, CLUSTER, COHORT, FIXED),
    decision_json(REQUESTS, TOKENS, REASONING, mode="drop"),
    decision_json(FIXED, REQUESTS, allow=False),
]


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(RAWS),
            st.sampled_from(["s1", "s2", "a:b"]),
            st.sampled_from([None, "", "acme", "other"]),
            st.sampled_from([None, "c-1", "c-2"]),
            st.sampled_from([None, "openai_chat"]),
            st.one_of(st.integers(min_value=0, max_value=10**12), st.sampled_from([1, 0])),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_every_request_gets_the_decision_validation_makes_for_its_input(
    requests: list[tuple[str, str, str | None, str | None, str | None, int]],
) -> None:
    cache = DecisionCache(size=3)
    for raw, subject, org, cluster, dialect, tokens in requests:
        doc = input_doc(subject, org, cluster, dialect, tokens)
        expected = decision_from_json(raw, doc)
        got, result_of = cache.resolve(raw, doc)
        assert got == expected
        assert got.model_dump(mode="json") == expected.model_dump(mode="json")
        if result_of is not None:  # the decision log's result, without dumping the decision
            logged = expected.model_dump(mode="json", exclude_none=True)
            assert result_of() == logged
            assert list(result_of()) == list(logged)  # the same fields in the same order
        assert [q.model_fields_set for q in got.quotas] == [
            q.model_fields_set for q in expected.quotas
        ]
    assert len(cache) <= 3


def test_a_repeated_decision_is_validated_once() -> None:
    cache = DecisionCache()
    raw = RAWS[1]
    first = cache.decision(raw, input_doc())
    assert cache.decision(raw, input_doc()) is first
    other = cache.decision(raw, input_doc(subject="s2", tokens=5))
    assert (cache.hits, cache.misses) == (2, 1)
    assert other.quotas[0].key == "subject:s2:requests"
    assert {q.name: q.cost for q in other.quotas}["tokens"] == 5
    assert first.quotas[0].key == "subject:s1:requests"  # the cached one is left as it was


@pytest.mark.parametrize("tokens", [-1, 1.5, True, "7"])
def test_a_cost_that_does_not_validate_fails_as_it_would_uncached(tokens: Any) -> None:
    cache = DecisionCache()
    raw = decision_json(TOKENS)
    cache.decision(raw, input_doc())  # cached with a valid cost
    doc = input_doc(tokens=tokens)
    try:
        expected: Decision | Exception = decision_from_json(raw, doc)
    except InvalidDecisionError as exc:
        expected = exc
    if isinstance(expected, Exception):
        with pytest.raises(InvalidDecisionError, match=str(expected)):
            cache.decision(raw, doc)
    else:
        assert cache.decision(raw, doc) == expected


def test_each_result_is_a_new_document() -> None:
    # The decision log may mask fields of an event's result in place: no request's result is
    # another's, nor the cache's.
    cache = DecisionCache()
    raw = RAWS[1]
    assert cache.resolve(raw, input_doc())[1] is None  # validated in full: no result
    decision, result_of = cache.resolve(raw, input_doc(subject="s2"))
    assert result_of is not None
    first = result_of()
    first["quotas"][0]["key"] = "masked"
    first["allow"] = "masked"
    assert result_of() == decision.model_dump(mode="json", exclude_none=True)
    again = cache.resolve(raw, input_doc())[1]
    assert again is not None and again()["quotas"][0]["key"] == "subject:s1:requests"


def test_an_invalid_decision_is_not_cached() -> None:
    cache = DecisionCache()
    raw = decision_json(allow=False).replace('"reasons"', '"ignored"').replace('"status"', '"s"')
    for _ in range(2):
        with pytest.raises(InvalidDecisionError):
            cache.decision(raw, input_doc())
    assert len(cache) == 0 and cache.misses == 2


def test_the_least_recently_used_entry_is_dropped() -> None:
    cache = DecisionCache(size=2)
    a, b, c = (decision_json(REQUESTS, mode=m) for m in ("full", "summary", "truncate"))
    for raw in (a, b, a, c):  # a is used again after b: b goes
        cache.decision(raw, input_doc())
    cache.decision(a, input_doc())
    assert (cache.hits, cache.misses) == (2, 3)
    cache.decision(b, input_doc())
    assert cache.misses == 4


def test_decisions_are_frozen() -> None:
    decision = DecisionCache().decision(RAWS[1], input_doc())
    with pytest.raises(ValidationError, match="frozen"):
        decision.allow = False  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        decision.quotas[0].cost = 0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        decision.reasoning.mode = "full"  # type: ignore[misc]


async def test_a_new_revision_starts_with_an_empty_cache(pack: PolicySource) -> None:
    engine = EmbeddedEngine(pack, check=False)
    doc = copy.deepcopy(make_input("pro", "government_id", "DE"))
    first = await engine.verdict(doc)
    assert (await engine.verdict(doc)).decision == first.decision
    old = engine._active.decisions
    assert engine.status()["decision_cache"] == {"entries": 1, "hits": 1, "misses": 1}
    await engine.activate(dataclasses.replace(pack, revision="changed"))
    assert engine._active.decisions is not old and len(engine._active.decisions) == 0
    verdict = await engine.verdict(doc)
    assert verdict.revision == "changed" and verdict.decision == first.decision
