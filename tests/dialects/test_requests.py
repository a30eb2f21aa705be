"""Reading requests, finding dialects, and writing errors each SDK understands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import orjson
import pytest

from gatekeeper.contract import PromptFeatures
from gatekeeper.dialects import (
    DIALECTS,
    AnthropicMessages,
    Dialect,
    OpenAIChat,
    OpenAIResponses,
    RequestBodyError,
    dialect_for_path,
    dialect_named,
)
from tests.reasoning.sdk import anthropic_client, openai_client

CHAT, RESPONSES, MESSAGES = OpenAIChat(), OpenAIResponses(), AnthropicMessages()


@pytest.mark.parametrize(
    ("path", "prefix", "expected"),
    [
        ("/v1/chat/completions", "", "openai_chat"),
        ("/v1/responses", "", "openai_responses"),
        ("/v1/messages", "", "anthropic_messages"),
        ("/v1/chat/completions/", "", None),
        ("/v1/models", "", None),
        ("/openai/v1/chat/completions", "", None),
        ("/openai/v1/chat/completions", "/openai", "openai_chat"),
        ("/openai/v1/messages", "/openai/", "anthropic_messages"),
        ("/v1/messages", "/openai", None),
        ("/openaiv1/messages", "/openai", None),
    ],
)
def test_dialect_for_path_is_exact(path: str, prefix: str, expected: str | None) -> None:
    dialect = dialect_for_path(path, prefix=prefix)
    assert (dialect.name if dialect else None) == expected


def test_dialects_are_found_by_name() -> None:
    assert [dialect_named(d.name) for d in DIALECTS] == list(DIALECTS)
    assert dialect_named("nope") is None


@dataclass
class Read:
    """A request body and the facts expected from it (``None`` = not checked)."""

    dialect: Dialect
    body: dict[str, Any]
    model: str | None = "m"
    stream: bool = False
    reasoning: bool = False
    max_tokens: int | None = None
    features: PromptFeatures | None = None
    estimated: int | None = None


_USER = [{"role": "user", "content": "12345678"}]  # 8 chars = 2 tokens

READS = {
    # chat
    "chat-minimal": Read(CHAT, {"model": "m", "messages": _USER}, estimated=2 + 4096),
    "chat-stream": Read(CHAT, {"model": "m", "messages": _USER, "stream": True}, stream=True),
    "chat-stream-null": Read(CHAT, {"model": "m", "messages": _USER, "stream": None}),
    "chat-max-completion-tokens-wins": Read(
        CHAT,
        {"model": "m", "messages": _USER, "max_completion_tokens": 10, "max_tokens": 99},
        max_tokens=10,
        estimated=12,
    ),
    "chat-max-tokens": Read(
        CHAT, {"model": "m", "messages": _USER, "max_tokens": 99}, max_tokens=99
    ),
    "chat-reasoning-effort": Read(
        CHAT, {"model": "m", "messages": _USER, "reasoning_effort": "high"}, reasoning=True
    ),
    "chat-reasoning-effort-none": Read(
        CHAT, {"model": "m", "messages": _USER, "reasoning_effort": "none"}
    ),
    "chat-deepseek-thinking": Read(
        CHAT, {"model": "m", "thinking": {"type": "enabled"}}, reasoning=True
    ),
    "chat-deepseek-thinking-disabled": Read(CHAT, {"model": "m", "thinking": {"type": "disabled"}}),
    "chat-openrouter-reasoning": Read(
        CHAT, {"model": "m", "reasoning": {"effort": "high"}}, reasoning=True
    ),
    "chat-openrouter-reasoning-excluded": Read(
        CHAT, {"model": "m", "reasoning": {"exclude": True}}
    ),
    "chat-openrouter-reasoning-disabled": Read(
        CHAT, {"model": "m", "reasoning": {"enabled": False}}
    ),
    "chat-include-reasoning": Read(CHAT, {"model": "m", "include_reasoning": True}, reasoning=True),
    "chat-vllm-enable-thinking": Read(
        CHAT, {"model": "m", "chat_template_kwargs": {"enable_thinking": True}}, reasoning=True
    ),
    "chat-vllm-thinking-off": Read(
        CHAT, {"model": "m", "chat_template_kwargs": {"enable_thinking": False}}
    ),
    "chat-tools-and-results": Read(
        CHAT,
        {
            "model": "m",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [
                {"role": "system", "content": "sys"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hello"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64," + "A" * 999},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
        },
        features=PromptFeatures(
            messages=4, chars=3 + 5 + 1 + 2 + 2, has_tools=True, has_tool_results=True
        ),
    ),
    "chat-no-model": Read(CHAT, {"messages": _USER}, model=None),
    # responses
    "responses-string-input": Read(
        RESPONSES,
        {"model": "m", "input": "12345678", "max_output_tokens": 5},
        max_tokens=5,
        estimated=7,
        features=PromptFeatures(messages=1, chars=8),
    ),
    "responses-instructions-count": Read(
        RESPONSES,
        {"model": "m", "input": "1234", "instructions": "5678"},
        features=PromptFeatures(messages=1, chars=8),
    ),
    "responses-items": Read(
        RESPONSES,
        {
            "model": "m",
            "tools": [{"type": "function", "name": "f"}],
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "42"},
            ],
        },
        features=PromptFeatures(
            messages=3, chars=2 + 1 + 2 + 2, has_tools=True, has_tool_results=True
        ),
    ),
    "responses-reasoning": Read(
        RESPONSES, {"model": "m", "reasoning": {"effort": "low", "summary": "auto"}}, reasoning=True
    ),
    "responses-reasoning-none": Read(RESPONSES, {"model": "m", "reasoning": {"effort": "none"}}),
    "responses-encrypted-include": Read(
        RESPONSES, {"model": "m", "include": ["reasoning.encrypted_content"]}, reasoning=True
    ),
    "responses-stream": Read(RESPONSES, {"model": "m", "input": "x", "stream": True}, stream=True),
    # anthropic
    "anthropic-minimal": Read(
        MESSAGES,
        {"model": "m", "max_tokens": 100, "messages": _USER},
        max_tokens=100,
        estimated=102,
        features=PromptFeatures(messages=1, chars=8),
    ),
    "anthropic-system-string": Read(
        MESSAGES,
        {"model": "m", "system": "1234", "messages": _USER},
        features=PromptFeatures(messages=1, chars=12),
    ),
    "anthropic-system-blocks": Read(
        MESSAGES,
        {
            "model": "m",
            "system": [{"type": "text", "text": "1234", "cache_control": {"type": "ephemeral"}}],
            "messages": _USER,
        },
        features=PromptFeatures(messages=1, chars=12),
    ),
    "anthropic-thinking-enabled": Read(
        MESSAGES,
        {"model": "m", "thinking": {"type": "enabled", "budget_tokens": 2048}},
        reasoning=True,
    ),
    "anthropic-thinking-adaptive": Read(
        MESSAGES, {"model": "m", "thinking": {"type": "adaptive"}}, reasoning=True
    ),
    "anthropic-thinking-disabled": Read(MESSAGES, {"model": "m", "thinking": {"type": "disabled"}}),
    "anthropic-tool-results": Read(
        MESSAGES,
        {
            "model": "m",
            "tools": [{"name": "f", "input_schema": {}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "abc", "signature": "S" * 500},
                        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42"}],
                },
            ],
        },
        features=PromptFeatures(
            messages=3, chars=2 + 3 + 1 + 2, has_tools=True, has_tool_results=True
        ),
    ),
    "anthropic-stream": Read(MESSAGES, {"model": "m", "stream": True}, stream=True),
}


@pytest.mark.parametrize("case", READS.values(), ids=READS.keys())
def test_read_request(case: Read) -> None:
    facts = case.dialect.read_request(case.body)
    assert facts.model == case.model
    assert facts.stream is case.stream
    assert facts.reasoning_requested is case.reasoning
    assert facts.max_tokens == case.max_tokens
    if case.features is not None:
        assert facts.prompt_features == case.features
    if case.estimated is not None:
        assert facts.estimated_tokens == case.estimated
    assert facts.estimated_tokens >= (case.max_tokens or case.dialect.default_output_tokens)


@pytest.mark.parametrize("case", READS.values(), ids=READS.keys())
def test_prompt_features_set_every_field(case: Read) -> None:
    """The features are a copy of one template with every field set: a field added to
    PromptFeatures must be set there too, or every request would share the template's value."""
    features = case.dialect.read_request(case.body).prompt_features
    assert features.model_fields_set == set(PromptFeatures.model_fields)
    assert features == PromptFeatures.model_validate(features.model_dump())


BAD = {
    "chat-array-body": (CHAT, [], "JSON object"),
    "chat-string-body": (CHAT, "hi", "JSON object"),
    "chat-messages-not-list": (CHAT, {"messages": "hi"}, "'messages' must be an array"),
    "chat-message-not-object": (CHAT, {"messages": ["hi"]}, r"'messages\[0\]' must be an object"),
    "chat-stream-not-bool": (CHAT, {"stream": "yes"}, "'stream' must be a boolean"),
    "chat-stream-number": (CHAT, {"stream": 1}, "'stream' must be a boolean"),
    "chat-model-not-string": (CHAT, {"model": 4}, "'model' must be a string"),
    "chat-max-tokens-bool": (CHAT, {"max_tokens": True}, "'max_tokens' must be an integer"),
    "chat-max-tokens-float": (CHAT, {"max_tokens": 1.5}, "'max_tokens' must be an integer"),
    "chat-max-tokens-negative": (CHAT, {"max_completion_tokens": -1}, "must not be negative"),
    "chat-reasoning-not-object": (CHAT, {"reasoning": "high"}, "'reasoning' must be an object"),
    "chat-effort-not-string": (
        CHAT,
        {"reasoning_effort": 3},
        "'reasoning_effort' must be a string",
    ),
    "responses-input-number": (RESPONSES, {"input": 3}, "'input' must be a string or an array"),
    "responses-input-item-not-object": (
        RESPONSES,
        {"input": ["hi"]},
        r"'input\[0\]' must be an object",
    ),
    "responses-max-output-string": (
        RESPONSES,
        {"max_output_tokens": "9"},
        "'max_output_tokens' must be an integer",
    ),
    "anthropic-null-body": (MESSAGES, None, "JSON object"),
    "anthropic-system-number": (MESSAGES, {"system": 3}, "'system' must be a string"),
    "anthropic-thinking-not-object": (MESSAGES, {"thinking": True}, "'thinking' must be an object"),
    "anthropic-messages-object": (MESSAGES, {"messages": {}}, "'messages' must be an array"),
}


@pytest.mark.parametrize(("dialect", "body", "message"), BAD.values(), ids=BAD.keys())
def test_malformed_request_is_a_clear_error(dialect: Dialect, body: Any, message: str) -> None:
    with pytest.raises(RequestBodyError, match=message):
        dialect.read_request(body)


# -- errors -------------------------------------------------------------------------------

OPENAI_ERRORS = {
    400: (openai.BadRequestError, "invalid_request_error"),
    401: (openai.AuthenticationError, "authentication_error"),
    403: (openai.PermissionDeniedError, "permission_error"),
    404: (openai.NotFoundError, "not_found_error"),
    413: (openai.APIStatusError, "request_too_large"),
    429: (openai.RateLimitError, "rate_limit_error"),
    451: (openai.APIStatusError, "permission_error"),
    500: (openai.InternalServerError, "server_error"),
    503: (openai.InternalServerError, "server_error"),
}


@pytest.mark.parametrize("dialect", [CHAT, RESPONSES], ids=["chat", "responses"])
@pytest.mark.parametrize("status", OPENAI_ERRORS, ids=str)
def test_openai_error_body_raises_the_sdk_exception_with_the_reason_code(
    dialect: Dialect, status: int
) -> None:
    exception, kind = OPENAI_ERRORS[status]
    document = dialect.error_body(status, "quota_exceeded", "Daily token quota used up.")
    assert document == {
        "error": {
            "message": "Daily token quota used up.",
            "type": kind,
            "param": None,
            "code": "quota_exceeded",
        }
    }
    client = openai_client(orjson.dumps(document), "application/json", status)
    with pytest.raises(exception) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert (info.value.status_code, info.value.code, info.value.type) == (
        status,
        "quota_exceeded",
        kind,
    )


ANTHROPIC_ERRORS = {
    400: (anthropic.BadRequestError, "invalid_request_error"),
    401: (anthropic.AuthenticationError, "authentication_error"),
    402: (anthropic.APIStatusError, "billing_error"),
    403: (anthropic.PermissionDeniedError, "permission_error"),
    404: (anthropic.NotFoundError, "not_found_error"),
    409: (anthropic.ConflictError, "conflict_error"),
    413: (anthropic.RequestTooLargeError, "request_too_large"),
    422: (anthropic.UnprocessableEntityError, "invalid_request_error"),
    429: (anthropic.RateLimitError, "rate_limit_error"),
    451: (anthropic.APIStatusError, "permission_error"),
    500: (anthropic.InternalServerError, "api_error"),
    503: (anthropic.InternalServerError, "api_error"),
    504: (anthropic.InternalServerError, "timeout_error"),
    529: (anthropic.OverloadedError, "overloaded_error"),
}


@pytest.mark.parametrize("status", ANTHROPIC_ERRORS, ids=str)
def test_anthropic_error_body_raises_the_sdk_exception_with_the_reason_code(status: int) -> None:
    exception, kind = ANTHROPIC_ERRORS[status]
    document = MESSAGES.error_body(
        status, "kyc_required", "Verify your identity.", request_id="req_1"
    )
    assert document == {
        "type": "error",
        "error": {"type": kind, "message": "Verify your identity.", "code": "kyc_required"},
        "request_id": "req_1",
    }
    client = anthropic_client(orjson.dumps(document), "application/json", status)
    # Newer SDKs add subclasses (e.g. 503 ServiceUnavailableError under InternalServerError).
    with pytest.raises(exception) as info:
        client.messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == status
    assert info.value.type == kind
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["code"] == "kyc_required"
