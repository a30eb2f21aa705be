"""demo-reasoner over Anthropic messages, driven by the official anthropic SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, TextBlock, ThinkingBlock, ToolUseBlock

from ._support import parse_sse, words

QUESTION = "Which is larger, 9.11 or 9.8?"
MESSAGES: list[Any] = [{"role": "user", "content": QUESTION}]
LOOKUP_TOOL: Any = {
    "name": "lookup",
    "description": "Look a fact up.",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "exact": {"type": "boolean"}},
        "required": ["query"],
    },
}


def ask(client: anthropic.Anthropic, **extra: Any) -> Message:
    options: dict[str, Any] = {"model": "demo-reasoner", "max_tokens": 2048, "messages": MESSAGES}
    message = client.messages.create(**{**options, **extra})
    assert isinstance(message, Message)
    return message


def blocks(message: Message) -> tuple[ThinkingBlock, Any]:
    thinking, second = message.content
    assert isinstance(thinking, ThinkingBlock)
    return thinking, second


def test_reply_has_signed_thinking_then_text(anthropic_client: anthropic.Anthropic) -> None:
    message = ask(anthropic_client, system="Answer briefly.")
    thinking, text = blocks(message)
    assert isinstance(text, TextBlock) and text.text
    assert QUESTION in thinking.thinking and thinking.thinking.count(". ") >= 3
    assert thinking.signature
    assert message.stop_reason == "end_turn"
    usage = message.usage
    assert usage.input_tokens == words(QUESTION) + words("Answer briefly.")
    assert usage.output_tokens == words(thinking.thinking) + words(text.text)
    assert usage.output_tokens_details is not None
    assert usage.output_tokens_details.thinking_tokens == words(thinking.thinking)


def test_same_request_same_reply(anthropic_client: anthropic.Anthropic) -> None:
    assert ask(anthropic_client).model_dump() == ask(anthropic_client).model_dump()


def test_explicit_thinking_config_is_accepted(anthropic_client: anthropic.Anthropic) -> None:
    message = ask(anthropic_client, thinking={"type": "enabled", "budget_tokens": 1024})
    assert message.content == ask(anthropic_client).content


def test_stream_helper_builds_the_same_message(anthropic_client: anthropic.Anthropic) -> None:
    whole = ask(anthropic_client)
    with anthropic_client.messages.stream(
        model="demo-reasoner", max_tokens=2048, messages=MESSAGES
    ) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert final.model_dump() == whole.model_dump()
    assert kinds.count("thinking_delta") >= 5 and kinds.count("text_delta") >= 2
    assert kinds.index("signature_delta") == kinds.count("thinking_delta")


def test_stream_frames_match_anthropic(http: httpx.Client) -> None:
    body = {"model": "demo-reasoner", "max_tokens": 2048, "messages": MESSAGES, "stream": True}
    response = http.post("/v1/messages", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.content)
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    final_usage = events[-2][1]["usage"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert final_usage["input_tokens"] == start["usage"]["input_tokens"] == words(QUESTION)
    assert final_usage["output_tokens"] > final_usage["output_tokens_details"]["thinking_tokens"]


def test_thinking_disabled_gives_text_only(anthropic_client: anthropic.Anthropic) -> None:
    message = ask(anthropic_client, thinking={"type": "disabled"})
    assert [b.type for b in message.content] == ["text"]
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 0


def test_tiny_token_limit_stops_at_max_tokens(anthropic_client: anthropic.Anthropic) -> None:
    message = ask(anthropic_client, max_tokens=8)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 8
    assert [b.type for b in message.content] == ["thinking"]


def tool_turn(client: anthropic.Anthropic) -> Message:
    message = ask(client, tools=[LOOKUP_TOOL])
    assert message.stop_reason == "tool_use"
    return message


def follow_up(first: Message, assistant_content: list[Any]) -> list[Any]:
    call = first.content[-1]
    assert isinstance(call, ToolUseBlock)
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "9.8 is larger"}
    return [
        *MESSAGES,
        {"role": "assistant", "content": assistant_content},
        {"role": "user", "content": [result]},
    ]


def test_tool_use_round_trip_with_thinking_blocks(anthropic_client: anthropic.Anthropic) -> None:
    first = tool_turn(anthropic_client)
    _, call = blocks(first)
    assert isinstance(call, ToolUseBlock)
    assert (call.name, call.input) == ("lookup", {"query": QUESTION})
    second = ask(anthropic_client, tools=[LOOKUP_TOOL], messages=follow_up(first, first.content))
    assert second.stop_reason == "end_turn"
    _, text = blocks(second)
    assert isinstance(text, TextBlock) and "lookup tool returned: 9.8 is larger" in text.text


def test_streamed_tool_use_matches_the_json_one(anthropic_client: anthropic.Anthropic) -> None:
    whole = tool_turn(anthropic_client)
    with anthropic_client.messages.stream(
        model="demo-reasoner", max_tokens=2048, messages=MESSAGES, tools=[LOOKUP_TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert final.model_dump() == whole.model_dump()


def test_tool_result_without_thinking_is_rejected(anthropic_client: anthropic.Anthropic) -> None:
    first = tool_turn(anthropic_client)
    history = follow_up(first, [first.content[-1]])
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(anthropic_client, tools=[LOOKUP_TOOL], messages=history)
    assert caught.value.type == "invalid_request_error"
    expected = "Expected `thinking` or `redacted_thinking`, but found `tool_use`"
    assert f"messages.1.content.0.type: {expected}" in caught.value.message
    assert caught.value.request_id


def test_edited_thinking_fails_the_signature_check(anthropic_client: anthropic.Anthropic) -> None:
    first = tool_turn(anthropic_client)
    thinking, call = blocks(first)
    edited = thinking.model_copy(update={"thinking": thinking.thinking + " (edited)"})
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(anthropic_client, tools=[LOOKUP_TOOL], messages=follow_up(first, [edited, call]))
    assert "messages.1.content.0: Invalid `signature` in `thinking` block" in caught.value.message


def test_tool_result_without_thinking_is_fine_when_thinking_is_off(
    anthropic_client: anthropic.Anthropic,
) -> None:
    first = tool_turn(anthropic_client)
    history = follow_up(first, [first.content[-1]])
    message = ask(
        anthropic_client, tools=[LOOKUP_TOOL], messages=history, thinking={"type": "disabled"}
    )
    assert [b.type for b in message.content] == ["text"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"model": "demo-reasoner", "messages": MESSAGES},
            "max_tokens: Field required",
            id="no-max-tokens",
        ),
        pytest.param(
            {"model": "demo-reasoner", "max_tokens": 64},
            "messages: Field required",
            id="no-messages",
        ),
        pytest.param(
            {"max_tokens": 64, "messages": MESSAGES}, "model: Field required", id="no-model"
        ),
        pytest.param(
            {"model": "demo-reasoner", "max_tokens": 64, "messages": []},
            "messages: at least one message is required",
            id="empty-messages",
        ),
        pytest.param(
            {
                "model": "demo-reasoner",
                "max_tokens": 1024,
                "messages": MESSAGES,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
            "`max_tokens` must be greater than `thinking.budget_tokens`",
            id="budget-not-below-max-tokens",
        ),
    ],
)
def test_invalid_requests_raise_bad_request(
    anthropic_client: anthropic.Anthropic, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.post("/v1/messages", body=body, cast_to=Message)
    assert caught.value.type == "invalid_request_error"
    assert message in caught.value.message
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"


def test_non_json_body_is_a_400_in_anthropic_format(http: httpx.Client) -> None:
    response = http.post(
        "/v1/messages", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("The request body is not valid JSON: ")
    assert response.headers["request-id"] == body["request_id"]
