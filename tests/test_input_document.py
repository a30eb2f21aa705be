"""The policy input document: built as JSON, byte for byte what the ``Input`` model dumps."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.contract import (
    KycLevel,
    Network,
    PromptFeatures,
    Signals,
    Subject,
)
from gatekeeper.dialects.base import RequestFacts
from gatekeeper.input_document import build_input, input_model


def reference(**values: Any) -> bytes:
    """The document as the middleware built it before: the validated models, dumped."""
    return orjson.dumps(input_model(**values).model_dump(mode="json"))


def built(**values: Any) -> bytes:
    return orjson.dumps(build_input(**values))


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
windows = st.dictionaries(st.sampled_from(["10m", "1h", "24h"]), count, max_size=3)
usage = {
    "requests": windows,
    "tokens": windows,
    "reasoning_requests": windows,
    "reasoning_tokens": windows,
    "refused": windows,
    "reasoning_share": st.floats(0, 1),
    "template_count": count,
}
# What the signals stage hands over: a ``Signals`` dumped to JSON (tests/signals pins that).
signal_documents = st.none() | st.builds(
    lambda s: s.model_dump(mode="json"),
    st.builds(
        Signals,
        available=st.booleans(),
        subject=st.fixed_dictionaries({**usage, "account_age_days": st.none() | finite}),
        cluster=st.fixed_dictionaries(
            {**usage, "id": maybe_text, "size": count, "linked_by": st.lists(text, max_size=3)}
        ),
        cot_elicitation=st.floats(0, 1),
        cot_patterns=st.lists(text, max_size=3),
        template_hash=maybe_text,
        template_repetition=st.floats(0, 1),
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
    signals=signal_documents,
)
def test_the_document_is_what_the_input_model_dumps(**values: Any) -> None:
    assert built(**values) == reference(**values)


class TenantSubject(Subject):
    """A subject type of an API team's own, with one field more."""

    tenant: str = "t1"


def plain_facts(**changes: Any) -> RequestFacts:
    facts = RequestFacts(model="m", max_tokens=16, estimated_tokens=29)
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


@pytest.mark.parametrize(
    ("facts", "subject"),
    [
        (plain_facts(max_tokens=True), Subject(id="a")),
        (plain_facts(estimated_tokens=29.0), Subject(id="a")),
        (plain_facts(stream=1), Subject(id="a")),
        (plain_facts(), TenantSubject(id="a")),
    ],
    ids=["bool-max-tokens", "float-estimate", "int-stream", "subject-subclass"],
)
def test_values_of_other_types_are_coerced_as_the_models_coerce_them(
    facts: RequestFacts, subject: Subject
) -> None:
    values: dict[str, Any] = {
        "method": "POST",
        "path": "/v1/chat/completions",
        "dialect": "openai_chat",
        "facts": facts,
        "subject": subject,
        "network": Network(client_ip="192.0.2.7"),
        "unix_ns": 1_767_225_600_123_456_789,
        "user_agent": "ua",
        "signals": None,
    }
    assert built(**values) == reference(**values)


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
