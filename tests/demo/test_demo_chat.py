"""demo-reasoner over OpenAI chat completions, driven by the official openai SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCall,
)

from ._support import parse_sse, words

QUESTION = "Why is the sky blue at noon?"
MESSAGES: list[Any] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": QUESTION},
]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def reasoning_of(message: Any) -> str | None:
    """``reasoning_content`` is not in OpenAI's schema; the SDK keeps it as an extra field."""
    return (message.model_extra or {}).get("reasoning_content")


def ask(client: openai.OpenAI, **extra: Any) -> ChatCompletion:
    completion = client.chat.completions.create(model="demo-reasoner", messages=MESSAGES, **extra)
    assert isinstance(completion, ChatCompletion)
    return completion


def ask_stream(client: openai.OpenAI, **extra: Any) -> list[ChatCompletionChunk]:
    return list(
        client.chat.completions.create(
            model="demo-reasoner", messages=MESSAGES, stream=True, **extra
        )
    )


def test_reply_has_reasoning_answer_and_consistent_usage(openai_client: openai.OpenAI) -> None:
    completion = ask(openai_client)
    choice = completion.choices[0]
    reasoning = reasoning_of(choice.message)
    assert reasoning and QUESTION in reasoning and "Step 3:" in reasoning
    assert reasoning.count(". ") >= 3
    assert choice.message.content and choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.prompt_tokens == words("Answer briefly.") + words(QUESTION)
    assert usage.completion_tokens_details.reasoning_tokens == words(reasoning)
    assert usage.completion_tokens == words(reasoning) + words(choice.message.content)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_same_request_same_reply(openai_client: openai.OpenAI) -> None:
    assert ask(openai_client).model_dump() == ask(openai_client).model_dump()


def test_different_question_different_reasoning(openai_client: openai.OpenAI) -> None:
    other = openai_client.chat.completions.create(
        model="demo-reasoner", messages=[{"role": "user", "content": "What is 12 * 7?"}]
    )
    assert reasoning_of(other.choices[0].message) != reasoning_of(
        ask(openai_client).choices[0].message
    )
    assert "= 84" in (other.choices[0].message.content or "")


def test_stream_sends_reasoning_then_content_then_usage(openai_client: openai.OpenAI) -> None:
    whole = ask(openai_client)
    chunks = ask_stream(openai_client, stream_options={"include_usage": True})
    kinds = []
    reasoning, content = "", ""
    for chunk in chunks[:-1]:
        assert chunk.usage is None
        delta = chunk.choices[0].delta
        if piece := (delta.model_extra or {}).get("reasoning_content"):
            reasoning += piece
            kinds.append("reasoning")
        if delta.content:
            content += delta.content
            kinds.append("content")
    assert kinds == sorted(kinds, key=lambda k: k == "content"), "reasoning must come first"
    assert kinds.count("reasoning") >= 5 and kinds.count("content") >= 2
    assert reasoning == reasoning_of(whole.choices[0].message)
    assert content == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert {c.id for c in chunks} == {whole.id}


def test_stream_without_include_usage_has_no_usage(
    openai_client: openai.OpenAI, http: httpx.Client
) -> None:
    chunks = ask_stream(openai_client)
    assert all(c.usage is None and c.choices for c in chunks)
    body = {"model": "demo-reasoner", "messages": MESSAGES, "stream": True}
    events = parse_sse(http.post("/v1/chat/completions", json=body).content)
    assert all(name is None for name, _ in events), "chat streams have no event: lines"
    assert events[-1] == (None, "[DONE]")
    assert all("usage" not in data for _, data in events[:-1])


def test_stream_helper_accumulates_the_same_message(openai_client: openai.OpenAI) -> None:
    whole = ask(openai_client)
    with openai_client.chat.completions.stream(model="demo-reasoner", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == whole.choices[0].message.content


def test_reasoning_effort_none_turns_reasoning_off(openai_client: openai.OpenAI) -> None:
    completion = ask(openai_client, reasoning_effort="none")
    assert reasoning_of(completion.choices[0].message) is None
    assert completion.usage is not None and completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    assert completion.usage.completion_tokens == words(completion.choices[0].message.content)


def test_tiny_token_limit_cuts_the_reply(openai_client: openai.OpenAI) -> None:
    completion = ask(openai_client, max_completion_tokens=10)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 10
    assert not completion.choices[0].message.content


def test_tool_round_trip(openai_client: openai.OpenAI) -> None:
    first = ask(openai_client, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls and isinstance(calls[0], ChatCompletionMessageFunctionToolCall)
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == '{"city":"Why is the sky blue at noon?","days":1}'
    history: list[Any] = [
        *MESSAGES,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 24 C"},
    ]
    second = openai_client.chat.completions.create(
        model="demo-reasoner", messages=history, tools=[WEATHER_TOOL]
    )
    assert second.choices[0].finish_reason == "stop"
    assert "get_weather tool returned: Sunny, 24 C" in (second.choices[0].message.content or "")


def test_streamed_tool_call_matches_the_json_one(openai_client: openai.OpenAI) -> None:
    whole = ask(openai_client, tools=[WEATHER_TOOL])
    with openai_client.chat.completions.stream(
        model="demo-reasoner", messages=MESSAGES, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    streamed, expected = final.choices[0].message.tool_calls, whole.choices[0].message.tool_calls
    assert streamed and expected
    assert isinstance(streamed[0], ChatCompletionMessageFunctionToolCall)
    assert isinstance(expected[0], ChatCompletionMessageFunctionToolCall)
    assert streamed[0].id == expected[0].id
    assert streamed[0].function.arguments == expected[0].function.arguments


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        pytest.param(
            {"model": "demo-reasoner"}, "messages", "missing_required_parameter", id="no-messages"
        ),
        pytest.param(
            {"model": "demo-reasoner", "messages": []},
            "messages",
            "empty_array",
            id="empty-messages",
        ),
        pytest.param({"messages": MESSAGES}, None, None, id="no-model"),
    ],
)
def test_invalid_requests_raise_bad_request(
    openai_client: openai.OpenAI, body: dict[str, Any], param: str | None, code: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"
    assert (caught.value.param, caught.value.code) == (param, code)
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


def test_non_json_body_is_a_400_in_openai_format(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("We could not parse the JSON body of your request.")
    assert (error["param"], error["code"]) == (None, None)
