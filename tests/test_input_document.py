"""The policy input document: built as JSON, and a fixed point of the contract.

Every document the builder makes must validate as ``contract.Input`` and be exactly what that
``Input`` dumps (every field, in the model's order, of the model's type: an int where a float
belongs changes the bytes the policy sees), so the builder and the contract cannot drift; and it
must carry the facts it was built from.
"""

from __future__ import annotations

import warnings
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.contract import (
    Input,
    KycLevel,
    Network,
    PromptFeatures,
    Signals,
    Subject,
)
from gatekeeper.dialects.base import RequestFacts
from gatekeeper.input_document import (
    USAGE_MAPS,
    _time,
    _time_of,
    behaviour_document,
    build_input,
    cluster_document,
    family_document,
    sample_input,
    signals_document,
    unavailable_signals,
    usage_document,
)
from gatekeeper.policy.conformance import SAMPLE_INPUT


def as_the_contract_dumps(doc: dict[str, Any]) -> bytes:
    """``doc`` validated as an ``Input`` and dumped: what the policy would see from a model."""
    return orjson.dumps(Input.model_validate(doc).model_dump(mode="json"))


text = st.text(max_size=12)
maybe_text = st.none() | text
count = st.integers(min_value=0, max_value=2**40)
finite = st.floats(allow_nan=False, allow_infinity=False)

subjects = st.builds(
    Subject,
    id=text,
    org=maybe_text,
    tier=text,
    kyc_level=st.sampled_from(list(KycLevel)),
    account_created=maybe_text,
    account_age_days=st.none() | finite,
    flags=st.lists(text, max_size=3),
    payment_fingerprint=maybe_text,
    auth_method=st.none() | st.sampled_from(["api_key", "jwt", "resolver"]),
)
networks = st.builds(
    Network,
    client_ip=maybe_text,
    peer_ip=maybe_text,
    forwarded=st.booleans(),
    country=maybe_text,
    registered_country=maybe_text,
    asn=st.none() | count,
    as_org=maybe_text,
    is_hosting=st.booleans(),
    is_proxy=st.booleans(),
    jurisdiction_tags=st.lists(text, max_size=3),
)
facts_ = st.builds(
    RequestFacts,
    model=maybe_text,
    stream=st.booleans(),
    reasoning_requested=st.booleans(),
    max_tokens=st.none() | count,
    estimated_tokens=count,
    prompt_features=st.builds(
        PromptFeatures,
        messages=count,
        chars=count,
        has_tools=st.booleans(),
        has_tool_results=st.booleans(),
    ),
)
names = st.lists(st.sampled_from(["10m", "1h", "24h", "7d"]), unique=True, max_size=3)
ages = st.dictionaries(st.sampled_from(["7", "30", "90"]), count, max_size=3)


@st.composite
def usage_parts(draw: st.DrawFn) -> dict[str, Any]:
    """A ``usage_document`` as the signal state reads one: totals per window, or none seen."""
    windows = draw(names)
    totals = draw(
        st.none()
        | st.lists(
            st.lists(count, min_size=7, max_size=7), min_size=len(windows), max_size=len(windows)
        )
    )
    main = draw(st.integers(0, max(0, len(windows) - 1)))
    if totals is not None and not windows:
        totals = None
    return usage_document(windows, totals, main, draw(count), draw(count))


@st.composite
def signal_parts(draw: st.DrawFn) -> dict[str, Any] | None:
    """``input.signals`` as the stage hands it over, from sampled reads of its state."""
    if draw(st.booleans()):
        return None if draw(st.booleans()) else unavailable_signals()
    cluster = cluster_document(
        draw(usage_parts()),
        draw(maybe_text),
        draw(count),
        draw(st.lists(text, max_size=3)),
        draw(ages),
    )
    return signals_document(
        draw(usage_parts()),
        cluster,
        available=draw(st.booleans()),
        account_age_days=draw(st.none() | finite),
        cot_elicitation=draw(st.floats(0, 1)),
        cot_patterns=draw(st.lists(text, max_size=3)),
        template_hash=draw(maybe_text),
        template_repetition=draw(st.floats(0, 1)),
        family=family_document(draw(maybe_text), draw(count), draw(ages)),
        behaviour=behaviour_document(
            draw(maybe_text), draw(count), draw(ages), draw(st.booleans())
        ),
    )


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["POST", "GET"]) | text,
    path=text,
    dialect=st.none() | st.sampled_from(["openai_chat", "openai_responses", "anthropic_messages"]),
    facts=facts_,
    subject=subjects,
    network=networks,
    unix_ns=st.integers(min_value=0, max_value=2**62),
    user_agent=maybe_text,
    signals=signal_parts(),
)
def test_the_document_is_what_the_contract_dumps_and_carries_the_facts(**values: Any) -> None:
    doc = build_input(**values)
    assert orjson.dumps(doc) == as_the_contract_dumps(doc)
    facts: RequestFacts = values["facts"]
    assert doc["subject"] == values["subject"].model_dump(mode="json")
    assert doc["network"] == values["network"].model_dump(mode="json")
    assert doc["request"] == {
        "method": values["method"],
        "path": values["path"],
        "dialect": values["dialect"],
        "model": facts.model,
        "stream": facts.stream,
        "reasoning_requested": facts.reasoning_requested,
        "max_tokens": facts.max_tokens,
        "estimated_tokens": facts.estimated_tokens,
        "user_agent": values["user_agent"],
        "prompt_features": facts.prompt_features.model_dump(mode="json"),
    }
    expected_signals = values["signals"] or Signals().model_dump(mode="json")
    assert doc["signals"] == expected_signals
    assert doc["time"]["unix_ns"] == values["unix_ns"]


class TenantSubject(Subject):
    """A subject type of an API team's own, with one field more."""

    tenant: str = "t1"


def plain_facts(**changes: Any) -> RequestFacts:
    facts = RequestFacts(model="m", max_tokens=16, estimated_tokens=29)
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


@pytest.mark.parametrize(
    ("facts", "subject", "expected"),
    [
        (plain_facts(max_tokens=True), Subject(id="a"), {"max_tokens": 1}),
        (plain_facts(estimated_tokens=29.0), Subject(id="a"), {"estimated_tokens": 29}),
        (plain_facts(stream=1), Subject(id="a"), {"stream": True}),
        (plain_facts(), TenantSubject(id="a"), {}),
    ],
    ids=["bool-max-tokens", "float-estimate", "int-stream", "subject-subclass"],
)
def test_values_of_other_types_are_coerced_as_the_contract_coerces_them(
    facts: RequestFacts, subject: Subject, expected: dict[str, Any]
) -> None:
    doc = build_input(
        method="POST",
        path="/v1/chat/completions",
        dialect="openai_chat",
        facts=facts,
        subject=subject,
        network=Network(client_ip="192.0.2.7"),
        unix_ns=1_767_225_600_123_456_789,
        user_agent="ua",
    )
    assert orjson.dumps(doc) == as_the_contract_dumps(doc)
    for name, value in expected.items():
        assert doc["request"][name] == value and type(doc["request"][name]) is type(value)
    # A subject type of the app's own: the policy sees the contract's fields only.
    assert doc["subject"] == Subject(id="a").model_dump(mode="json")


def test_without_signals_the_policy_sees_them_unavailable() -> None:
    doc = build_input(
        method="POST",
        path="/p",
        dialect=None,
        facts=RequestFacts(),
        subject=Subject(id="a"),
        network=Network(),
        unix_ns=0,
        user_agent=None,
    )
    assert doc["signals"] == Signals().model_dump(mode="json")
    assert doc["time"] == {
        "unix_ns": 0,
        "rfc3339": "1970-01-01T00:00:00Z",
        "weekday": 3,
        "hour_utc": 0,
    }


def test_the_signals_part_of_the_state_reads_is_what_the_contract_dumps() -> None:
    usage = usage_document(["10m", "1h"], [(4, 10, 2, 0, 1, 1, 0), (8, 20, 2, 3, 1, 3, 2)], 1, 2, 1)
    doc = signals_document(
        usage,
        cluster_document(dict(usage), "c-1", 2, ["org"], {"7": 1}),
        available=True,
        account_age_days=3.5,
    )
    assert orjson.dumps(doc) == orjson.dumps(Signals.model_validate(doc).model_dump(mode="json"))
    # Shares are of the main window (index 1: 8 requests), rounded to 4 places.
    assert (usage["reasoning_share"], usage["exposed_share"], usage["repeat_share"]) == (
        0.25,
        0.375,
        0.25,
    )
    assert usage["requests"] == {"10m": 4, "1h": 8}
    assert doc["subject"]["account_age_days"] == 3.5


def test_unavailable_signals_are_the_contracts_defaults_and_fresh_each_time() -> None:
    assert signals_document() == unavailable_signals() == Signals().model_dump(mode="json")
    first = unavailable_signals()
    first["subject"]["requests"]["1h"] = 1
    assert unavailable_signals()["subject"]["requests"] == {}


def test_the_sample_input_is_built_from_parts_and_complete() -> None:
    doc = sample_input()
    assert orjson.dumps(doc) == as_the_contract_dumps(doc)
    assert doc == SAMPLE_INPUT
    assert (doc["subject"]["id"], doc["subject"]["kyc_rank"], doc["network"]["country"]) == (
        "sample",
        1,
        "US",
    )
    assert doc["time"] == {
        "unix_ns": 1_767_225_600_000_000_000,
        "rfc3339": "2026-01-01T00:00:00Z",
        "weekday": 3,
        "hour_utc": 0,
    }
    assert doc["signals"]["available"] is False


@given(
    st.lists(st.sampled_from(["10m", "1h", "24h", "7d"]), unique=True, min_size=1, max_size=4),
    st.data(),
)
def test_a_usage_map_holds_each_windows_total_of_its_metric(windows: list[str], data: Any) -> None:
    totals = data.draw(
        st.lists(
            st.lists(count, min_size=7, max_size=7), min_size=len(windows), max_size=len(windows)
        )
    )
    doc = usage_document(windows, totals)
    for metric, name in enumerate(USAGE_MAPS):
        assert doc[name] == {window: totals[i][metric] for i, window in enumerate(windows)}


#: 2001-09-09 to 2286-11-20, and exact seconds, and fractions that round up to the next second.
_NANOS = st.one_of(
    st.integers(min_value=10**18, max_value=10**19 - 1),
    st.integers(min_value=10**9, max_value=10**10).map(lambda s: s * 10**9),
    st.integers(min_value=10**9, max_value=10**10).map(lambda s: s * 10**9 + 999_999_500),
    st.integers(min_value=10**9, max_value=10**10).map(lambda s: s * 10**9 + 499),
)


@settings(max_examples=2000, deadline=None)
@given(first=_NANOS, offset=st.integers(min_value=-(10**10), max_value=10**10))
def test_the_time_part_is_what_datetime_makes_of_the_arrival(first: int, offset: int) -> None:
    # Two arrivals: the second within ten seconds of the first, or in the same second (the
    # calendar part is kept from one second to the next).
    for unix_ns in (first, first + offset, first + offset % 10**9):
        assert _time(unix_ns) == _time_of(unix_ns)


def test_the_fast_path_checks_every_field_of_the_parts_it_copies() -> None:
    """``build_input`` copies a plain subject's, network's and prompt features' fields as they
    are, having checked each one's type (``_plain``): a field added to a model must be added
    to that check (and to these lists) too."""
    from gatekeeper.input_document import FEATURES_FIELDS, NETWORK_FIELDS, SUBJECT_FIELDS

    assert tuple(Subject.model_fields) == SUBJECT_FIELDS
    assert tuple(Network.model_fields) == NETWORK_FIELDS
    assert tuple(PromptFeatures.model_fields) == FEATURES_FIELDS


@pytest.mark.parametrize(
    ("part", "change"),
    [
        ("subject", {"kyc_rank": True}),
        ("subject", {"account_age_days": 3}),
        ("subject", {"flags": ("a",)}),
        ("network", {"asn": "3320"}),
        ("network", {"jurisdiction_tags": ("eu",)}),
    ],
)
def test_a_part_changed_after_validation_is_dumped_by_the_contract(
    part: str, change: dict[str, Any]
) -> None:
    """A value assigned without validation (models do not validate assignments) takes the
    model's path: the part is what its model dumps, as before the fast path existed."""
    subject, network = Subject(id="a", flags=["x"]), Network(jurisdiction_tags=["eu"])
    for name, value in change.items():
        setattr(subject if part == "subject" else network, name, value)
    values: dict[str, Any] = {
        "method": "POST",
        "path": "/v1/chat/completions",
        "dialect": "openai_chat",
        "facts": plain_facts(),
        "subject": subject,
        "network": network,
        "unix_ns": 1,
        "user_agent": None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic's serializer warns of the unexpected type
        doc = build_input(**values)
        assert doc["subject"] == subject.model_dump(mode="json")
        assert doc["network"] == network.model_dump(mode="json")
