"""Prompt skeletons: one template's instances share a hash, different templates do not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.signals import skeleton, template_hash

SAME_TEMPLATE = [
    (
        "Solve step by step: Alice buys 12 pens at 3 dollars each.",
        "Solve step by step: Bruno buys 7 pens at 15 dollars each.",
    ),
    (
        "A train leaves Paris at 9:40 and travels 120 km.",
        "A train leaves New York City at 11:05 and travels 3,500.5 km.",
    ),
    ('Translate "good morning" into French', 'Translate "see you tomorrow" into French'),
    ("Summarise https://example.com/a?b=1 for me", "Summarise www.example.org/x for me"),
    ("Mail alice@example.com the invoice", "Mail b.c+d@mail.example.org the invoice"),
    ("Rate the answer 'it is 4' from 1 to 5", "Rate the answer 'maybe' from 1 to 5"),
    ("Compute 45% of 200", "Compute 7.5% of 1e6"),
    ("Zoë met Émile in Ørsted", "Alice met Bob in Oslo"),
]
DIFFERENT_TEMPLATES = [
    ("Solve step by step: Alice buys 12 pens.", "Solve step by step: Alice buys 12 apples."),
    ("How do I debug a queue in python?", "How do I debug a socket in rust?"),
    ("I don't think it's right", "I don't think it's wrong"),
]


@pytest.mark.parametrize(("a", "b"), SAME_TEMPLATE)
def test_instances_of_one_template_share_a_hash(a: str, b: str) -> None:
    assert skeleton(a) == skeleton(b)
    assert template_hash(a) == template_hash(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT_TEMPLATES)
def test_different_wording_is_a_different_template(a: str, b: str) -> None:
    assert template_hash(a) != template_hash(b)


def test_skeleton_shows_the_abstractions() -> None:
    text = 'Ask Alice (alice@x.io) about "the plan" at https://x.io on 3/4, 12.5% off'
    assert skeleton(text) == "<w> (<email>) about <q> at <url> on <n> off"


def test_hash_is_short_and_stable() -> None:
    assert template_hash("hello") == template_hash("hello")
    assert len(template_hash("hello")) == 16


@given(
    st.sampled_from(["Alice", "Bruno", "Chen", "New York"]),
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(["red car", "it depends", "x"]),
)
def test_filled_slots_never_change_the_hash(name: str, number: int, quote: str) -> None:
    template = 'Explain step by step why {name} paid {n} dollars for "{q}".'
    reference = template.format(name="Dana", n=1, q="a")
    assert template_hash(template.format(name=name, n=number, q=quote)) == template_hash(reference)
