"""Continuity at the dialect level: what a shaper keeps, sent back by a client that replays what
it was shown, is restored to exactly what the model produced."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.dialects import AnthropicMessages, Dialect, OpenAIChat, OpenAIResponses
from tests.dialects.streams import now, shaper

MODES = ["drop", "summary", "truncate", "redact"]
THOUGHT = "The user wants the weather. I should call the weather tool for Paris first."


def _found(dialect: Dialect, mode: str, response: dict[str, Any], request: dict[str, Any]) -> Any:
    """Shape ``response`` in ``mode``, let the client build ``request`` from what it was shown
    (``request`` may use the placeholder ``SHOWN``), and restore the request."""
    s = shaper(dialect, mode, 8, keep=True)
    shown = now(s.shape_json(response))
    vault = {key: item.value for item in s.kept for key in item.keys}
    body = _replace(request, shown)
    keys = dialect.history_keys(body)
    restored, count = dialect.restore_history(body, {k: vault[k] for k in keys if k in vault})
    return restored, count, shown


def _replace(value: Any, shown: dict[str, Any]) -> Any:
    if value == "SHOWN_CONTENT":
        return shown["content"]
    if value == "SHOWN_MESSAGE":
        return shown["choices"][0]["message"]
    if value == "SHOWN_OUTPUT":
        return shown["output"]
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            replaced = _replace(item, shown)
            out.extend(replaced if item == "SHOWN_OUTPUT" else [replaced])
        return out
    if isinstance(value, dict):
        return {k: _replace(v, shown) for k, v in value.items()}
    return value


ANTHROPIC_RESPONSE = {
    "id": "msg_1",
    "type": "message",
    "content": [
        {"type": "thinking", "thinking": THOUGHT, "signature": "SIG"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
}


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_turn_gets_its_original_thinking_back(mode: str) -> None:
    request = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "SHOWN_CONTENT"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        ]
    }
    restored, count, shown = _found(AnthropicMessages(), mode, ANTHROPIC_RESPONSE, request)
    assert shown["content"] != ANTHROPIC_RESPONSE["content"]
    assert restored["messages"][1]["content"] == ANTHROPIC_RESPONSE["content"]
    assert count == 1


def test_anthropic_placeholder_that_cannot_be_restored_is_removed() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "[reasoning redacted]", "signature": "gk1.x"},
                    {"type": "text", "text": "hello"},
                ],
            },
            {"role": "user", "content": "and?"},
        ]
    }
    dialect = AnthropicMessages()
    assert dialect.history_keys(request) == ["anthropic_messages:h:gk1.x"]
    restored, count = dialect.restore_history(request, {})
    assert restored["messages"][1]["content"] == [{"type": "text", "text": "hello"}]
    assert count == 0


def test_anthropic_genuine_thinking_is_left_alone() -> None:
    request = {"messages": [{"role": "assistant", "content": ANTHROPIC_RESPONSE["content"]}]}
    assert AnthropicMessages().restore_history(request, {}) == (request, 0)


RESPONSES_RESPONSE = {
    "id": "resp_1",
    "output": [
        {
            "id": "rs_1",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": THOUGHT}],
            "encrypted_content": "ENC",
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "w",
            "arguments": "{}",
        },
    ],
}


@pytest.mark.parametrize("mode", MODES)
def test_responses_input_gets_its_original_reasoning_item_back(mode: str) -> None:
    request = {
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            "SHOWN_OUTPUT",
            {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        ]
    }
    restored, count, _ = _found(OpenAIResponses(), mode, RESPONSES_RESPONSE, request)
    assert restored["input"][1:3] == RESPONSES_RESPONSE["output"]
    assert len(restored["input"]) == 4
    assert count == 1


def test_responses_item_sent_without_id_is_found_by_its_call_id() -> None:
    s = shaper(OpenAIResponses(), "drop", keep=True)
    now(s.shape_json(RESPONSES_RESPONSE))
    vault = {key: item.value for item in s.kept for key in item.keys}
    request = {"input": [{"type": "function_call", "call_id": "call_1", "name": "w"}]}
    keys = OpenAIResponses().history_keys(request)
    restored, count = OpenAIResponses().restore_history(request, {k: vault[k] for k in keys})
    assert restored["input"][0] == RESPONSES_RESPONSE["output"][0] and count == 1


CHAT_RESPONSE = {
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "reasoning_content": THOUGHT,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "w", "arguments": "{}"},
                    }
                ],
            },
        }
    ]
}


@pytest.mark.parametrize("mode", MODES)
def test_chat_tool_turn_gets_its_reasoning_content_back(mode: str) -> None:
    request = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            "SHOWN_MESSAGE",
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        ]
    }
    restored, count, _ = _found(OpenAIChat(), mode, CHAT_RESPONSE, request)
    assert restored["messages"][1] == CHAT_RESPONSE["choices"][0]["message"]
    assert count == 1


def test_nothing_to_restore_returns_the_same_body() -> None:
    for dialect, body in [
        (OpenAIChat(), {"messages": [{"role": "user", "content": "hi"}]}),
        (OpenAIResponses(), {"input": "hi"}),
        (AnthropicMessages(), {"messages": [{"role": "user", "content": "hi"}]}),
    ]:
        assert dialect.history_keys(body) == []
        assert dialect.restore_history(body, {}) == (body, 0)
