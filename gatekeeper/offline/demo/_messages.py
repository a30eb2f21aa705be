"""Anthropic messages (``POST /v1/messages``) for demo-reasoner.

The reply is a signed ``thinking`` block followed by a ``text`` block, or by a ``tool_use`` block
when the request offers tools. As on the real API, a follow-up turn that carries a
``tool_result`` must send back the thinking block(s) of the assistant turn that made the call,
unmodified: the block must lead that turn and its signature must verify.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from gatekeeper.offline.demo._reasoner import (
    Completion,
    Prompt,
    Tool,
    ToolResult,
    count_prompt_tokens,
    sign,
    split_deltas,
    split_text,
    verify,
)
from gatekeeper.offline.demo._wire import (
    InvalidRequest,
    Vendor,
    endpoint,
    json_response,
    positive_int,
    request_key,
    sse_frame,
    text_of,
)

_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_MISSING_THINKING = (
    "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
    "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
    "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
    "include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. "
    f"Please consult our documentation at {_DOCS}"
)

_Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Reply:
    id: str
    model: str
    completion: Completion

    @property
    def stop_reason(self) -> str:
        if self.completion.truncated:
            return "max_tokens"
        return "tool_use" if self.completion.tool_call is not None else "end_turn"

    @classmethod
    def of(cls, body: dict[str, Any], prompt: Prompt, completion: Completion) -> _Reply:
        return cls(f"msg_{prompt.key[:24]}", str(body["model"]), completion)

    def document(self) -> dict[str, Any]:
        return _message(self, _content(self))

    def frames(self) -> Iterator[bytes]:
        for kind, fields in _events(self):
            yield sse_frame({"type": kind, **fields}, event=kind)


def _invalid(exc: InvalidRequest, request_id: str) -> Response:
    return anthropic_error(400, "invalid_request_error", exc.message, request_id)


def anthropic_error(status: int, kind: str, message: str, request_id: str) -> Response:
    """An error in Anthropic's format."""
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return json_response(body, status=status, headers={"request-id": request_id})


def _prompt(body: dict[str, Any]) -> Prompt:
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise InvalidRequest(f"{name}: Field required")
    max_tokens = positive_int(body["max_tokens"])
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 1")
    history = body["messages"]
    if not isinstance(history, list) or not all(isinstance(m, dict) for m in history):
        raise InvalidRequest("messages: Input should be a valid list")
    if not history:
        raise InvalidRequest("messages: at least one message is required")
    reasoning = _thinking_enabled(body.get("thinking"), max_tokens)
    _check_thinking_blocks(history, reasoning)
    asked = [m for m in history if m.get("role") == "user" and text_of(m.get("content"))]
    return Prompt(
        question=text_of(asked[-1].get("content")) if asked else "",
        prompt_tokens=count_prompt_tokens(body.get("system")) + count_prompt_tokens(history),
        key=request_key(body),
        reason=reasoning,
        max_tokens=max_tokens,
        tools=_tools(body),
        tool_result=_tool_result(history),
    )


def _thinking_enabled(config: Any, max_tokens: int) -> bool:
    """demo-reasoner thinks unless ``thinking`` is ``{"type": "disabled"}``."""
    if not isinstance(config, dict):
        return True
    if config.get("type") == "enabled":
        budget = config.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise InvalidRequest(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if max_tokens <= budget:
            raise InvalidRequest(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                f"documentation at {_DOCS}#max-tokens-and-context-window-size"
            )
    return config.get("type") != "disabled"


def _check_thinking_blocks(history: list[dict[str, Any]], reasoning: bool) -> None:
    """Reject edited or foreign thinking, and a tool round trip that dropped its thinking."""
    for i, message in enumerate(history):
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, list):
            for j, block in enumerate(content):
                _check_block(i, j, block)
    i = len(history) - 2
    turn = history[i] if i >= 0 else {}
    if reasoning and _tool_result_block(history) and turn.get("role") == "assistant":
        content = turn.get("content")
        first = content[0] if isinstance(content, list) and content else {"type": "text"}
        found = first.get("type") if isinstance(first, dict) else "text"
        if found not in ("thinking", "redacted_thinking"):
            raise InvalidRequest(_MISSING_THINKING.format(i=i, found=found))


def _check_block(i: int, j: int, block: Any) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "thinking" and not _signed(block):
        raise InvalidRequest(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    if kind == "redacted_thinking":
        # demo-reasoner never redacts, so no redacted block can be one of its own.
        raise InvalidRequest(
            f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
        )


def _signed(block: dict[str, Any]) -> bool:
    thinking, signature = block.get("thinking"), block.get("signature")
    return isinstance(thinking, str) and isinstance(signature, str) and verify(thinking, signature)


def _tool_result_block(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    last = history[-1]
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return None
    results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    return results[0] if results else None


def _tools(body: dict[str, Any]) -> tuple[Tool, ...]:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        return ()
    offered = body.get("tools")
    if not isinstance(offered, list):
        return ()
    return tuple(
        Tool(t["name"], t.get("input_schema") or {})
        for t in offered
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    )


def _tool_result(history: list[dict[str, Any]]) -> ToolResult | None:
    result = _tool_result_block(history)
    if result is None:
        return None
    names = {
        block.get("id"): block.get("name")
        for m in history
        if m.get("role") == "assistant" and isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "tool_use"
    }
    name = names.get(result.get("tool_use_id"))
    return ToolResult(name if isinstance(name, str) else "tool", text_of(result.get("content")))


def _content(reply: _Reply) -> list[dict[str, Any]]:
    c = reply.completion
    blocks: list[dict[str, Any]] = []
    if c.reasoning:
        blocks.append({"type": "thinking", "thinking": c.reasoning, "signature": sign(c.reasoning)})
    if c.answer:
        blocks.append({"type": "text", "text": c.answer})
    if c.tool_call is not None:
        call = c.tool_call
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_{call.id}",
                "name": call.name,
                "input": call.arguments,
            }
        )
    return blocks


def _usage(c: Completion) -> dict[str, Any]:
    return {
        "input_tokens": c.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": c.output_tokens,
        "output_tokens_details": {"thinking_tokens": c.reasoning_tokens},
        "service_tier": "standard",
    }


def _message(reply: _Reply, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage(reply.completion),
    }


def _events(reply: _Reply) -> Iterator[_Event]:
    c = reply.completion
    start = {**_message(reply, []), "stop_reason": None}
    # Nothing generated yet: output counts start at 1, the totals arrive in message_delta.
    opening = {k: v for k, v in _usage(c).items() if k != "output_tokens_details"}
    yield "message_start", {"message": {**start, "usage": {**opening, "output_tokens": 1}}}
    for index, block in enumerate(_content(reply)):
        for n, event in enumerate(_block_events(index, block)):
            yield event
            if index == 0 and n == 0:
                # Where Anthropic sends its first keep-alive: right after the first block opens.
                yield "ping", {}
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    usage = {k: v for k, v in _usage(c).items() if k != "service_tier"}
    yield "message_delta", {"delta": delta, "usage": usage}
    yield "message_stop", {}


def _block_events(index: int, block: dict[str, Any]) -> Iterator[_Event]:
    kind = block["type"]
    empty = {"thinking": {"thinking": "", "signature": ""}, "text": {"text": ""}}.get(kind)
    opening = {**block, **empty} if empty is not None else {**block, "input": {}}
    yield "content_block_start", {"index": index, "content_block": opening}
    for delta in _block_deltas(block):
        yield "content_block_delta", {"index": index, "delta": delta}
    yield "content_block_stop", {"index": index}


def _block_deltas(block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = block["type"]
    if kind == "thinking":
        for piece in split_deltas(block["thinking"]):
            yield {"type": "thinking_delta", "thinking": piece}
        yield {"type": "signature_delta", "signature": block["signature"]}
    elif kind == "text":
        for piece in split_deltas(block["text"]):
            yield {"type": "text_delta", "text": piece}
    else:
        arguments = _json_text(block["input"])
        for piece in split_text(arguments) or [""]:
            yield {"type": "input_json_delta", "partial_json": piece}


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


ANTHROPIC = Vendor("The request body is not valid JSON: {detail}", "request-id", _invalid)

# Answer a messages request, as JSON or (with ``stream: true``) as SSE events.
messages = endpoint(ANTHROPIC, _prompt, _Reply.of)
