"""The deterministic model behind demo-reasoner, without HTTP."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.offline.demo._reasoner import (
    Prompt,
    Tool,
    ToolResult,
    count_tokens,
    seal,
    sign,
    split_deltas,
    split_text,
    summary_parts,
    think,
    verify,
)


def prompt(question: str = "What is the capital of France?", **extra: object) -> Prompt:
    return Prompt(question=question, prompt_tokens=count_tokens(question), key="k", **extra)  # type: ignore[arg-type]


@given(st.text())
def test_deltas_join_back_to_the_text(text: str) -> None:
    assert "".join(split_deltas(text)) == text
    assert "".join(split_text(text)) == text


@given(st.text(min_size=1))
def test_summary_parts_keep_every_token(question: str) -> None:
    reasoning = think(prompt(question)).reasoning
    parts = summary_parts(reasoning)
    assert " ".join(parts) == reasoning
    assert sum(count_tokens(p) for p in parts) == count_tokens(reasoning)


@given(st.text())
def test_signatures_verify_only_their_own_text(text: str) -> None:
    assert verify(text, sign(text))
    assert not verify(text + ".", sign(text))


def test_sealed_reasoning_hides_the_text() -> None:
    reasoning = think(prompt()).reasoning
    assert "France" not in seal(reasoning) and seal(reasoning) == seal(reasoning)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        pytest.param("What is 12 + 7?", "12 + 7 = 19", id="add"),
        pytest.param("and 6 * 7", "6 * 7 = 42", id="multiply"),
        pytest.param("1 / 4", "1 / 4 = 0.25", id="divide"),
        pytest.param("5 / 0", 'short answer about "5"', id="divide-by-zero"),
    ],
)
def test_simple_arithmetic_is_worked_out(question: str, expected: str) -> None:
    assert expected in think(prompt(question)).answer


def test_reasoning_has_numbered_steps_and_the_question() -> None:
    completion = think(prompt())
    assert "What is the capital of France?" in completion.reasoning
    assert all(f"Step {n}:" in completion.reasoning for n in (1, 2, 3, 4))
    assert '"capital"' in completion.reasoning


@given(st.integers(min_value=1, max_value=200))
def test_token_limit_is_respected(limit: int) -> None:
    completion = think(prompt(max_tokens=limit, tools=(Tool("search"),)))
    assert completion.output_tokens <= max(limit, think(prompt()).output_tokens)
    if completion.truncated:
        # A cut drops the tool call whole, so the output may stop a little short of the limit.
        assert completion.output_tokens <= limit and completion.tool_call is None


def test_tool_call_then_answer_from_its_result() -> None:
    tools = (Tool("search", {"properties": {"q": {"type": "string"}, "n": {"enum": [3, 5]}}}),)
    call = think(prompt(tools=tools)).tool_call
    assert call is not None and call.arguments == {"q": "What is the capital of France?", "n": 3}
    answered = think(prompt(tools=tools, tool_result=ToolResult("search", "Paris")))
    assert answered.tool_call is None and "search tool returned: Paris" in answered.answer


def test_reasoning_off_means_no_reasoning_tokens() -> None:
    completion = think(prompt(reason=False))
    assert completion.reasoning == "" and completion.reasoning_tokens == 0
    assert completion.output_tokens == count_tokens(completion.answer)
