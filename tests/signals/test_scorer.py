"""The built-in chain-of-thought elicitation scorer."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.signals import DEFAULT_PATTERNS, ElicitationScore, PatternScorer
from gatekeeper.signals.scorer import SHORT_TEXT, Pattern, leading_literal

SCORER = PatternScorer()


@pytest.mark.parametrize(
    ("prompt", "patterns"),
    [
        ("Think step by step.", {"step_by_step"}),
        ("Let's work through it step-by-step", {"step_by_step"}),
        ("Show your full reasoning before the answer.", {"show_reasoning"}),
        ("Please explain your thought process", {"show_reasoning"}),
        ("Write out your chain of thought", {"show_reasoning", "chain_of_thought"}),
        ("Put your thoughts in <thinking> tags", {"chain_of_thought"}),
        ("Use a scratchpad first", {"chain_of_thought"}),
        (
            "The correct answer is 42. Explain the reasoning that leads to this answer.",
            {"show_reasoning", "reconstruct_reasoning"},
        ),
        ("Given the final answer, derive the steps", {"reconstruct_reasoning"}),
        ("Work backwards from the result.", {"reconstruct_reasoning"}),
        ("Grade the following response using this rubric.", {"rubric_grading"}),
        ("Rate each answer on a scale of 1 to 10", {"rubric_grading"}),
        ("Think carefully before you respond.", {"think_first"}),
        ("List all intermediate steps", {"all_steps"}),
        ("请一步一步地思考，并写出推理过程", {"step_by_step", "show_reasoning"}),  # noqa: RUF001
        ("Resuélvelo paso a paso", {"step_by_step"}),
        ("Réfléchis étape par étape", {"step_by_step"}),
        ("Denke Schritt für Schritt nach", {"step_by_step"}),
        ("Resolva passo a passo", {"step_by_step"}),
        ("Реши шаг за шагом", {"step_by_step"}),
        ("ステップバイステップで考えて", {"step_by_step"}),
        ("단계별로 설명해 주세요", {"step_by_step"}),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_elicitation_is_recognised(prompt: str, patterns: set[str]) -> None:
    result = SCORER.score_text(prompt)
    assert set(result.patterns) == patterns
    assert result.score > 0.25


@pytest.mark.parametrize(
    "prompt",
    [
        "What's the capital of France?",
        "Write a haiku about the sea",
        "Translate 'good morning' into Spanish",
        "How do I configure nginx as a reverse proxy?",
        "Summarise this article in three bullet points.",
        "Is a tomato a fruit?",
        "The cot in the nursery needs a new mattress",
        "A cotton shirt costs 20 dollars",
        "",
    ],
)
def test_ordinary_prompts_score_zero(prompt: str) -> None:
    assert SCORER.score_text(prompt) == ElicitationScore()


def test_independent_evidence_adds_up_below_one() -> None:
    one = SCORER.score_text("Think step by step.")
    two = SCORER.score_text("Think step by step and show your full reasoning.")
    three = SCORER.score_text("Think step by step, show your full reasoning and use a scratchpad.")
    assert one.score == pytest.approx(0.45)
    assert two.score == pytest.approx(1 - 0.55 * 0.5)
    assert one.score < two.score < three.score < 1


def test_the_protocol_is_async() -> None:
    result = asyncio.run(SCORER.score("think step by step"))
    assert result.patterns == ("step_by_step",)


def test_every_default_expression_starts_with_a_literal() -> None:
    # What keeps the scorer cheap on long prompts (see the module docstring).
    for pattern in DEFAULT_PATTERNS:
        for regex in pattern.regexes:
            assert regex.pattern[0] not in "([\\.?*+", (pattern.name, regex.pattern)


@given(st.text(max_size=300), st.sampled_from(["Think step by step. ", "Show your reasoning. "]))
def test_adding_an_elicitation_never_lowers_the_score(text: str, phrase: str) -> None:
    before = SCORER.score_text(text)
    after = SCORER.score_text(phrase + text)
    assert 0 <= before.score <= after.score < 1


@pytest.mark.parametrize(
    ("expression", "flags", "literal"),
    [
        (r"step[\s-]*by[\s-]*step", 0, "step"),
        ("zeige? (?:deinen|ihren)", 0, "zeig"),  # the quantifier makes the "e" optional
        (r"here\'s\ the", 0, "here's the"),
        ("thoughts?", 0, "thought"),
        ("(?:a|b)c", 0, ""),
        ("ab|cd", 0, ""),
        ("[sz]tep", 0, ""),
        ("step", re.IGNORECASE, ""),
        ("(?i)step", 0, ""),
    ],
)
def test_the_leading_literal_is_what_every_match_starts_with(
    expression: str, flags: int, literal: str
) -> None:
    assert leading_literal(re.compile(expression, flags)) == literal


def test_a_pattern_with_an_expression_without_a_literal_searches_every_text() -> None:
    pattern = Pattern.of("mixed", 0.5, "rubric", r"[0-9]+ points")
    assert pattern.literals == ()
    assert pattern.matches("give it 10 points")


_LITERALS = sorted({literal for pattern in DEFAULT_PATTERNS for literal in pattern.literals})
_FRAGMENTS = st.one_of(
    st.sampled_from(_LITERALS),
    st.sampled_from(["step by step", "your reasoning", " the ", " answer", " is 4. ", "ing", "-"]),
    st.text(max_size=12),
)


@given(st.lists(_FRAGMENTS, max_size=40).map("".join))
def test_the_literals_never_change_what_a_pattern_matches(text: str) -> None:
    # The literals only skip searches that could not match: every pattern matches the same
    # texts as its expressions searched without them, short texts and long ones.
    for lowered in (text.lower(), (text + " " * SHORT_TEXT).lower()):
        for pattern in DEFAULT_PATTERNS:
            expected = any(regex.search(lowered) for regex in pattern.regexes)
            assert pattern.matches(lowered) is expected, (pattern.name, lowered)
