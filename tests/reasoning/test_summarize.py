"""The summarisers: the built-in extractive one, bounding, and loading a plugged-in one."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.errors import ConfigurationError
from gatekeeper.reasoning.summarize import (
    ExtractiveSummariser,
    bound_summary,
    load_summariser,
    summarise_extractive,
)
from tests.dialects.streams import now

TRACE = (
    "The user asks whether 9.11 is larger than 9.8. "
    "I need to compare the two decimals carefully. "
    "Hmm. "
    "Comparing the tenths digit: 1 is smaller than 8, so 9.11 is smaller than 9.8. "
    "Let me double check by padding: 9.11 versus 9.80, and 11 is smaller than 80. "
    "So the answer is that 9.8 is larger."
)


def test_extractive_summary_is_whole_sentences_of_the_trace_in_order() -> None:
    summary = summarise_extractive(TRACE, 40)
    assert len(summary) <= 160
    sentences = [s for s in TRACE.split(". ") if s]
    picked = [s.rstrip(".") for s in summary.split(". ")]
    assert all(any(p.rstrip(".") == s.rstrip(".") for s in sentences) for p in picked)
    positions = [TRACE.index(p) for p in picked]
    assert positions == sorted(positions)
    assert "Hmm" not in summary  # a fragment says little


def test_extractive_summary_is_deterministic() -> None:
    assert summarise_extractive(TRACE, 30) == summarise_extractive(TRACE, 30)


@pytest.mark.parametrize(
    ("text", "tokens", "expected"),
    [
        ("", 10, ""),
        ("   \n ", 10, ""),
        ("Anything at all.", 0, ""),
        ("One sentence only.", 10, "One sentence only."),
        ("averyveryverylongwordwithoutspaces and more words here", 3, "averyveryve…"),
        ("short words that go on and on and on past the budget", 3, "short words…"),
    ],
    ids=["empty", "blank", "no-budget", "fits", "cut-hard", "cut-at-word"],
)
def test_extractive_edge_cases(text: str, tokens: int, expected: str) -> None:
    assert summarise_extractive(text, tokens) == expected


@given(text=st.text(max_size=400), tokens=st.integers(0, 50))
def test_extractive_summary_never_exceeds_its_budget(text: str, tokens: int) -> None:
    assert len(summarise_extractive(text, tokens)) <= tokens * 4


def test_the_summariser_object_is_async() -> None:
    assert now(ExtractiveSummariser().summarise(TRACE, 10)) == summarise_extractive(TRACE, 10)


def test_bound_summary_cuts_what_a_summariser_returns() -> None:
    assert bound_summary("  " + "x" * 50 + "  ", 3) == "x" * 12
    assert bound_summary("short", 3) == "short"


class Plugged:
    async def summarise(self, text: str, max_tokens: int) -> str:
        return "plugged"


@pytest.fixture
def plugin_module() -> Iterator[str]:
    module = types.ModuleType("gk_test_summarisers")
    module.Plugged = Plugged  # type: ignore[attr-defined]
    module.instance = Plugged()  # type: ignore[attr-defined]
    module.factory = lambda: Plugged()  # type: ignore[attr-defined]
    module.not_one = 42  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module.__name__
    del sys.modules[module.__name__]


@pytest.mark.parametrize("attribute", ["Plugged", "instance", "factory"])
def test_a_summariser_is_loaded_from_a_class_an_instance_or_a_factory(
    plugin_module: str, attribute: str
) -> None:
    summariser = load_summariser(f"{plugin_module}:{attribute}")
    assert now(summariser.summarise("x", 1)) == "plugged"


@pytest.mark.parametrize(
    "spec",
    ["model", "nomodule:thing", "gatekeeper:", ":x", "{module}:missing", "{module}:not_one"],
)
def test_a_bad_summariser_is_a_configuration_error(plugin_module: str, spec: str) -> None:
    with pytest.raises(ConfigurationError):
        load_summariser(spec.format(module=plugin_module))


def test_extractive_is_the_default() -> None:
    assert isinstance(load_summariser("extractive"), ExtractiveSummariser)
