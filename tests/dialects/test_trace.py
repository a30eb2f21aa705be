"""How each mode rewrites reasoning text (the part every dialect shares)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.reasoning.trace import (
    HANDLE_PREFIX,
    REDACTED_MARKER,
    TRUNCATED_MARKER,
    ShapingOptions,
    TraceEditor,
    handle,
)
from tests.dialects.streams import now

MODES = ["full", "summary", "truncate", "redact", "drop"]


def editor(mode: str, max_tokens: int | None = None, **options: object) -> TraceEditor:
    return TraceEditor(mode, max_tokens, ShapingOptions(**options))  # type: ignore[arg-type]


def show(ed: TraceEditor, pieces: list[str]) -> str:
    """What the client sees of one block fed ``pieces`` one by one."""
    block = ed.block()
    shown = "".join(block.feed(p) for p in pieces)
    return shown + now(block.close())


texts = st.text(alphabet=st.sampled_from("abc .!?\n"), max_size=120)


@given(
    mode=st.sampled_from(MODES),
    blocks=st.lists(st.tuples(texts, st.lists(st.integers(0, 120), max_size=6)), max_size=4),
    limit=st.integers(0, 40),
)
def test_any_split_of_any_block_shows_the_same(
    mode: str, blocks: list[tuple[str, list[int]]], limit: int
) -> None:
    """A JSON body (whole texts) and a stream (pieces) expose the same text, block by block."""
    whole, pieces = editor(mode, limit), editor(mode, limit)
    for text, cuts in blocks:
        points = sorted({min(c, len(text)) for c in cuts})
        split = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
        assert show(pieces, split) == now(whole.block().whole(text))
    assert (whole.seen_chars, whole.exposed_chars) == (pieces.seen_chars, pieces.exposed_chars)


@dataclass
class Case:
    id: str
    mode: str
    limit: int | None
    blocks: list[list[str]]
    expected: list[str]


CASES = [
    Case("full", "full", None, [["ab", "cd"]], ["abcd"]),
    Case("drop", "drop", None, [["ab", "cd"], ["x"]], ["", ""]),
    Case("redact-each-block", "redact", None, [["ab", "cd"], ["x"]], [REDACTED_MARKER] * 2),
    Case("redact-empty-block", "redact", None, [[]], [REDACTED_MARKER]),
    Case("truncate-under", "truncate", 2, [["abcd"]], ["abcd"]),
    Case("truncate-cut", "truncate", 1, [["abcdef"]], ["abcd" + TRUNCATED_MARKER]),
    Case(
        "truncate-spans-blocks",
        "truncate",
        2,
        [["abcdef"], ["ghijkl"], ["mn"]],
        ["abcdef", "gh" + TRUNCATED_MARKER, ""],
    ),
    Case(
        "truncate-exact-then-more",
        "truncate",
        1,
        [["abcd"], ["efgh"], ["ij"]],
        ["abcd", TRUNCATED_MARKER.lstrip(), ""],
    ),
    Case("truncate-zero", "truncate", 0, [["abc"], ["d"]], [TRUNCATED_MARKER.lstrip(), ""]),
    Case(
        "summary-budget-is-shared",
        "summary",
        5,
        [["First sentence here. Second one."], ["Another block of text."]],
        ["[summary] First sentence here.", ""],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_modes(case: Case) -> None:
    ed = editor(case.mode, case.limit)
    assert [show(ed, pieces) for pieces in case.blocks] == case.expected


def test_defaults_come_from_the_options() -> None:
    ed = editor("truncate", None, truncate_tokens=1)
    assert show(ed, ["abcdefgh"]) == "abcd" + TRUNCATED_MARKER
    ed = editor("summary", None, summary_tokens=3)
    assert show(ed, ["Tiny. A much longer sentence that cannot fit."]) == "[summary] Tiny."


class Leaky:
    """A summariser that ignores its budget."""

    async def summarise(self, text: str, max_tokens: int) -> str:
        return text


def test_a_summary_never_exceeds_the_budget_whatever_the_summariser_returns() -> None:
    ed = editor("summary", 2, summariser=Leaky())
    assert show(ed, ["x" * 100]) == "[summary] " + "x" * 8
    assert ed.exposed_chars == 8


def test_the_buffer_is_bounded_and_an_overflowing_block_is_incomplete() -> None:
    ed = editor("drop", None, keep=True, buffer_chars=10)
    first, second = ed.block(), ed.block()
    first.feed("12345678")
    second.feed("abcdef")
    assert (first.text, first.complete) == ("12345678", True)
    assert (second.text, second.complete) == ("ab", False)
    assert ed.seen_chars == 14  # everything seen is counted, kept or not


def test_full_mode_keeps_nothing() -> None:
    block = editor("full", None, keep=True).block()
    block.feed("abc")
    assert block.text == ""


def test_handles_are_deterministic_and_marked() -> None:
    assert handle("msg_1", "0", "sig") == handle("msg_1", "0", "sig")
    assert handle("msg_1", "0", "sig") != handle("msg_1", "1", "sig")
    assert handle("a").startswith(HANDLE_PREFIX)
