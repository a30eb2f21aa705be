"""OpenAI responses (``POST /v1/responses``) for demo-reasoner.

The output is a ``reasoning`` item (summary parts plus an opaque ``encrypted_content``) followed
by a ``message`` item, or by a ``function_call`` item when the request offers function tools (a
follow-up whose ``input`` ends with the ``function_call_output`` gets the answer). Streams carry
the full event sequence OpenAI sends, with ``event:`` lines equal to ``type`` and
``sequence_number`` counting from 0; like OpenAI's own stream, no ``data: [DONE]`` follows the
terminal event. Earlier output sent back as ``input`` is checked like the real API does
(``_responses_replay``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gatekeeper.offline.demo._chat import OPENAI
from gatekeeper.offline.demo._reasoner import (
    Completion,
    Prompt,
    Tool,
    ToolResult,
    count_prompt_tokens,
    seal,
    split_deltas,
    split_text,
    stable_id,
    summary_parts,
)
from gatekeeper.offline.demo._responses_replay import check_replay, follower_id, reasoning_id
from gatekeeper.offline.demo._wire import (
    DEMO_CREATED,
    InvalidRequest,
    endpoint,
    positive_int,
    request_key,
    sse_frame,
    text_of,
)

_Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Reply:
    body: dict[str, Any]
    key: str
    completion: Completion

    @property
    def status(self) -> str:
        return "incomplete" if self.completion.truncated else "completed"

    @classmethod
    def of(cls, body: dict[str, Any], prompt: Prompt, completion: Completion) -> _Reply:
        return cls(body, prompt.key, completion)

    def document(self) -> dict[str, Any]:
        return _response(self, _output(self), final=True)

    def frames(self) -> Iterator[bytes]:
        for n, (kind, fields) in enumerate(_events(self)):
            yield sse_frame({"type": kind, "sequence_number": n, **fields}, event=kind)

    def item_id(self, prefix: str) -> str:
        if prefix in ("msg_", "fc_"):
            # Linked to the reasoning item before it, so a replay without it can be refused.
            return follower_id(prefix, self.key, after_reasoning=bool(self.completion.reasoning))
        if prefix == "rs_":
            follower = "fc_" if self.completion.tool_call is not None else "msg_"
            return reasoning_id(self.item_id(follower))
        return stable_id(prefix, self.key, prefix)


def _prompt(body: dict[str, Any]) -> Prompt:
    if not body.get("model"):
        raise InvalidRequest(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    given = body.get("input")
    if given is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    if not isinstance(given, str | list):
        raise InvalidRequest(
            "Invalid type for 'input': expected a string or an array of input items.",
            param="input",
            code="invalid_type",
        )
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given
    check_replay(items, store=body.get("store") is not False)
    users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
    reasoning = body.get("reasoning")
    return Prompt(
        question=text_of(users[-1].get("content")) if users else "",
        prompt_tokens=count_prompt_tokens(items) + count_prompt_tokens(body.get("instructions")),
        key=request_key(body),
        # demo-reasoner always reasons unless the request sets reasoning.effort to "none".
        reason=not (isinstance(reasoning, dict) and reasoning.get("effort") == "none"),
        max_tokens=positive_int(body.get("max_output_tokens")),
        tools=_tools(body),
        tool_result=_tool_result(items),
    )


def _tools(body: dict[str, Any]) -> tuple[Tool, ...]:
    offered = body.get("tools")
    if body.get("tool_choice") == "none" or not isinstance(offered, list):
        return ()
    return tuple(
        Tool(t["name"], t.get("parameters") or {})
        for t in offered
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    )


def _tool_result(items: list[Any]) -> ToolResult | None:
    last = items[-1] if items else None
    if not isinstance(last, dict) or last.get("type") != "function_call_output":
        return None
    names = {
        i.get("call_id"): i.get("name")
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call"
    }
    name = names.get(last.get("call_id"))
    output = last.get("output")
    return ToolResult(name if isinstance(name, str) else "tool", text_of(output))


def _function_call_item(reply: _Reply, done: bool) -> dict[str, Any]:
    call = reply.completion.tool_call
    assert call is not None
    return {
        "id": reply.item_id("fc_"),
        "type": "function_call",
        "status": "completed" if done else "in_progress",
        "arguments": call.arguments_json if done else "",
        "call_id": f"call_{call.id}",
        "name": call.name,
    }


def _reasoning_item(reply: _Reply) -> dict[str, Any]:
    text = reply.completion.reasoning
    summary = [{"type": "summary_text", "text": part} for part in summary_parts(text)]
    item = {"id": reply.item_id("rs_"), "type": "reasoning", "summary": summary}
    return {**item, "encrypted_content": seal(text)}


def _message_item(reply: _Reply, text: str | None) -> dict[str, Any]:
    item = {"id": reply.item_id("msg_"), "type": "message", "role": "assistant"}
    if text is None:
        return {**item, "status": "in_progress", "content": []}
    return {**item, "status": reply.status, "content": [_text_part(text)]}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _output(reply: _Reply) -> list[dict[str, Any]]:
    c = reply.completion
    reasoning = [_reasoning_item(reply)] if c.reasoning else []
    if c.tool_call is not None:
        return [*reasoning, _function_call_item(reply, done=True)]
    message = [_message_item(reply, c.answer)] if c.answer or not c.truncated else []
    return reasoning + message


def _response(reply: _Reply, output: list[dict[str, Any]], *, final: bool) -> dict[str, Any]:
    body, c = reply.body, reply.completion
    asked = body.get("reasoning")
    asked = asked if isinstance(asked, dict) else {}
    effort = asked.get("effort") or "medium"
    summary = None if effort == "none" else asked.get("summary") or "auto"
    incomplete = {"reason": "max_output_tokens"} if final and c.truncated else None
    return {
        "id": reply.item_id("resp_"),
        "object": "response",
        "created_at": DEMO_CREATED,
        "status": reply.status if final else "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": effort, "summary": summary},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": _usage(c) if final else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _usage(c: Completion) -> dict[str, Any]:
    return {
        "input_tokens": c.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": c.output_tokens,
        "output_tokens_details": {"reasoning_tokens": c.reasoning_tokens},
        "total_tokens": c.prompt_tokens + c.output_tokens,
    }


def _events(reply: _Reply) -> Iterator[_Event]:
    started = _response(reply, [], final=False)
    yield "response.created", {"response": started}
    yield "response.in_progress", {"response": started}
    output = _output(reply)
    for index, item in enumerate(output):
        if item["type"] == "reasoning":
            yield from _reasoning_events(index, item)
        elif item["type"] == "function_call":
            yield from _function_call_events(reply, index, item)
        else:
            yield from _message_events(reply, index, item)
    terminal = "response.incomplete" if reply.completion.truncated else "response.completed"
    yield terminal, {"response": _response(reply, output, final=True)}


def _reasoning_events(index: int, item: dict[str, Any]) -> Iterator[_Event]:
    at = {"item_id": item["id"], "output_index": index}
    yield "response.output_item.added", {"output_index": index, "item": {**item, "summary": []}}
    for n, part in enumerate(item["summary"]):
        text = part["text"]
        yield (
            "response.reasoning_summary_part.added",
            {
                **at,
                "summary_index": n,
                "part": {"type": "summary_text", "text": ""},
            },
        )
        for piece in split_deltas(text):
            yield (
                "response.reasoning_summary_text.delta",
                {**at, "summary_index": n, "delta": piece},
            )
        yield "response.reasoning_summary_text.done", {**at, "summary_index": n, "text": text}
        yield "response.reasoning_summary_part.done", {**at, "summary_index": n, "part": part}
    yield "response.output_item.done", {"output_index": index, "item": item}


def _message_events(reply: _Reply, index: int, item: dict[str, Any]) -> Iterator[_Event]:
    at = {"item_id": item["id"], "output_index": index, "content_index": 0}
    text = item["content"][0]["text"]
    yield "response.output_item.added", {"output_index": index, "item": _message_item(reply, None)}
    yield "response.content_part.added", {**at, "part": _text_part("")}
    for piece in split_deltas(text):
        yield "response.output_text.delta", {**at, "delta": piece, "logprobs": []}
    yield "response.output_text.done", {**at, "text": text, "logprobs": []}
    yield "response.content_part.done", {**at, "part": item["content"][0]}
    yield "response.output_item.done", {"output_index": index, "item": item}


def _function_call_events(reply: _Reply, index: int, item: dict[str, Any]) -> Iterator[_Event]:
    at = {"item_id": item["id"], "output_index": index}
    opening = _function_call_item(reply, done=False)
    yield "response.output_item.added", {"output_index": index, "item": opening}
    for piece in split_text(item["arguments"]):
        yield "response.function_call_arguments.delta", {**at, "delta": piece}
    done = {**at, "arguments": item["arguments"], "name": item["name"]}
    yield "response.function_call_arguments.done", done
    yield "response.output_item.done", {"output_index": index, "item": item}


# Answer a responses request, as JSON or (with ``stream: true``) as SSE events.
responses = endpoint(OPENAI, _prompt, _Reply.of)
