"""OpenAI chat completions (``POST /v1/chat/completions``) for demo-reasoner.

Reasoning travels as ``reasoning_content`` on the message and on stream deltas, the way DeepSeek
and older vLLM send it; the rest of the shape, including ``stream_options.include_usage``,
follows OpenAI. Like DeepSeek in thinking mode, an assistant turn that called tools must come
back with its ``reasoning_content`` (400 otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from gatekeeper.offline.demo._reasoner import (
    Completion,
    Prompt,
    Tool,
    ToolResult,
    count_prompt_tokens,
    split_deltas,
    split_text,
)
from gatekeeper.offline.demo._wire import (
    DEMO_CREATED,
    InvalidRequest,
    Vendor,
    endpoint,
    json_response,
    positive_int,
    request_key,
    sse_frame,
    text_of,
)

NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent "
    "was not valid JSON. If you have trouble figuring out how to fix this, please contact us "
    "through our help center at help.openai.com.)"
)


@dataclass(frozen=True, slots=True)
class _Reply:
    id: str
    model: str
    completion: Completion
    # ``stream_options.include_usage``: OpenAI streams usage only when it was asked for.
    usage: bool

    def chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        head = {"id": self.id, "object": "chat.completion.chunk", "created": DEMO_CREATED}
        body = {**head, "model": self.model, "system_fingerprint": "fp_demo", "choices": choices}
        # OpenAI sends ``usage: null`` on every chunk only when usage was asked for.
        return {**body, "usage": None} if self.usage else body

    @classmethod
    def of(cls, body: dict[str, Any], prompt: Prompt, completion: Completion) -> _Reply:
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        return cls(f"chatcmpl-{prompt.key[:29]}", str(body["model"]), completion, usage)

    def document(self) -> dict[str, Any]:
        return _completion(self)

    def frames(self) -> Iterator[bytes]:
        return _chunks(self)


def openai_error(exc: InvalidRequest, request_id: str, status: int = 400) -> Response:
    """An error in OpenAI's format (shared by chat completions and responses)."""
    error = {
        "message": exc.message,
        "type": "invalid_request_error",
        "param": exc.param,
        "code": exc.code,
    }
    return json_response({"error": error}, status=status, headers={"x-request-id": request_id})


def _prompt(body: dict[str, Any]) -> Prompt:
    if not body.get("model"):
        raise InvalidRequest("you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest(
            "Invalid type for 'messages': expected an array of objects.",
            param="messages",
            code="invalid_type",
        )
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    users = [m for m in messages if m.get("role") == "user"]
    thinking = body.get("thinking")
    # demo-reasoner always reasons unless told not to (OpenAI's or DeepSeek's switch).
    reason = body.get("reasoning_effort") != "none" and not (
        isinstance(thinking, dict) and thinking.get("type") == "disabled"
    )
    if reason:
        _check_tool_turns(messages)
    return Prompt(
        question=text_of(users[-1].get("content")) if users else "",
        prompt_tokens=count_prompt_tokens(messages),
        key=request_key(body),
        reason=reason,
        max_tokens=positive_int(body.get("max_completion_tokens"))
        or positive_int(body.get("max_tokens")),
        tools=_tools(body),
        tool_result=_tool_result(messages),
    )


def _check_tool_turns(messages: list[dict[str, Any]]) -> None:
    """DeepSeek's thinking-mode rule: an assistant turn that called tools comes back with its
    ``reasoning_content`` (a turn without tool calls may leave it out)."""
    for message in messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            reasoning = message.get("reasoning_content")
            if not isinstance(reasoning, str) or not reasoning:
                raise InvalidRequest(
                    "The `reasoning_content` in the thinking mode must be passed back to the API."
                )


def _tools(body: dict[str, Any]) -> tuple[Tool, ...]:
    if body.get("tool_choice") == "none" or not isinstance(body.get("tools"), list):
        return ()
    functions = [t.get("function") for t in body["tools"] if isinstance(t, dict)]
    return tuple(
        Tool(f["name"], f.get("parameters") or {})
        for f in functions
        if isinstance(f, dict) and isinstance(f.get("name"), str)
    )


def _tool_result(messages: list[dict[str, Any]]) -> ToolResult | None:
    last = messages[-1]
    if last.get("role") != "tool":
        return None
    names = {
        call.get("id"): call.get("function", {}).get("name")
        for m in messages
        if m.get("role") == "assistant" and isinstance(m.get("tool_calls"), list)
        for call in m["tool_calls"]
        if isinstance(call, dict)
    }
    name = names.get(last.get("tool_call_id"))
    return ToolResult(name if isinstance(name, str) else "tool", text_of(last.get("content")))


def _finish_reason(completion: Completion) -> str:
    if completion.truncated:
        return "length"
    return "tool_calls" if completion.tool_call is not None else "stop"


def _usage(completion: Completion) -> dict[str, Any]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.output_tokens,
        "total_tokens": completion.prompt_tokens + completion.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": completion.reasoning_tokens},
    }


def _tool_calls(reply: _Reply) -> list[dict[str, Any]]:
    call = reply.completion.tool_call
    if call is None:
        return []
    function = {"name": call.name, "arguments": call.arguments_json}
    return [{"id": f"call_{call.id}", "type": "function", "function": function}]


def _completion(reply: _Reply) -> dict[str, Any]:
    c = reply.completion
    message: dict[str, Any] = {"role": "assistant", "content": c.answer or None}
    if c.reasoning:
        message["reasoning_content"] = c.reasoning
    message["refusal"] = None
    if c.tool_call is not None:
        message["tool_calls"] = _tool_calls(reply)
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(c)}
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": DEMO_CREATED,
        "model": reply.model,
        "system_fingerprint": "fp_demo",
        "choices": [choice],
        "usage": _usage(c),
    }


def _chunks(reply: _Reply) -> Iterator[bytes]:
    for delta, finish in _deltas(reply.completion):
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        yield sse_frame(reply.chunk([choice]))
    if reply.usage:
        yield sse_frame({**reply.chunk([]), "usage": _usage(reply.completion)})
    yield b"data: [DONE]\n\n"


def _deltas(c: Completion) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Reasoning deltas first, then content or tool-call deltas, then the finish chunk."""
    if c.reasoning:
        yield {"role": "assistant", "content": None, "reasoning_content": ""}, None
        for piece in split_deltas(c.reasoning):
            yield {"content": None, "reasoning_content": piece}, None
    else:
        yield {"role": "assistant", "content": "", "refusal": None}, None
    for piece in split_deltas(c.answer):
        yield {"content": piece}, None
    if c.tool_call is not None:
        call = c.tool_call
        start = {"index": 0, "id": f"call_{call.id}", "type": "function"}
        yield {"tool_calls": [{**start, "function": {"name": call.name, "arguments": ""}}]}, None
        for piece in split_text(call.arguments_json):
            yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None
    yield {}, _finish_reason(c)


OPENAI = Vendor(NOT_JSON, "x-request-id", openai_error)

# Answer a chat completion, as JSON or (with ``stream: true``) as SSE chunks.
chat_completions = endpoint(OPENAI, _prompt, _Reply.of)
