"""Anthropic Messages (``POST /v1/messages``).

Reasoning is a content block of type ``thinking`` (text + signature) or ``redacted_thinking``
(opaque data). Removing one means removing its ``content_block_start/delta/stop`` events and
renumbering ``index`` on later blocks so indices stay 0..n-1 in arrival order; ``event:`` lines
are kept (the SDK routes on them) and ``usage`` is left as sent (dialects.md §3.4).

Allow-lists decide what may stay when reasoning is removed: blocks of a type in
``SAFE_BLOCK_TYPES`` or ending in ``_tool_use``/``_tool_result`` (tool traffic, not reasoning),
deltas of a type in ``SAFE_DELTA_TYPES``, and the event types in ``_KEPT_EVENTS``. Anything
else, including block types added to the API later, is removed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from gatekeeper.contract import PromptFeatures, ReasoningPolicy
from gatekeeper.dialects._common import (
    anthropic_error,
    dumps,
    nested_int,
    object_items,
    opt_bool,
    opt_int,
    opt_list,
    opt_object,
    opt_str,
    require_object,
    text_chars,
)
from gatekeeper.dialects.base import (
    Dialect,
    RequestBodyError,
    RequestFacts,
    ResponseShaper,
    estimate_tokens,
)
from gatekeeper.shaping.sse import SSEEvent

#: Content block types (anthropic-python ``ContentBlock``) that carry no reasoning.
SAFE_BLOCK_TYPES = frozenset(
    {
        "text",
        "tool_use",
        "server_tool_use",
        "mcp_tool_use",
        "mcp_tool_result",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
_SAFE_BLOCK_SUFFIXES = ("_tool_use", "_tool_result")
#: ``content_block_delta`` payload types that carry no reasoning.
SAFE_DELTA_TYPES = frozenset({"text_delta", "input_json_delta", "citations_delta"})
_KEPT_EVENTS = frozenset({"message_start", "message_delta", "message_stop", "ping", "error"})


class AnthropicMessages(Dialect):
    """The Anthropic Messages dialect."""

    name: ClassVar[str] = "anthropic_messages"
    paths: ClassVar[tuple[str, ...]] = ("/v1/messages",)

    def read_request(self, body: Any) -> RequestFacts:
        body = require_object(body)
        messages = object_items(opt_list(body, "messages") or [], "messages")
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            raise RequestBodyError("'system' must be a string or an array of text blocks")
        max_tokens = opt_int(body, "max_tokens")
        thinking = opt_object(body, "thinking")
        chars = text_chars(messages) + text_chars(system)
        features = PromptFeatures(
            messages=len(messages),
            chars=chars,
            has_tools=bool(opt_list(body, "tools")),
            has_tool_results=any(_has_tool_result(m.get("content")) for m in messages),
        )
        return RequestFacts(
            model=opt_str(body, "model"),
            stream=bool(opt_bool(body, "stream")),
            reasoning_requested=thinking is not None and thinking.get("type") != "disabled",
            max_tokens=max_tokens,
            estimated_tokens=estimate_tokens(chars)
            + (max_tokens if max_tokens is not None else self.default_output_tokens),
            prompt_features=features,
        )

    def error_body(
        self, status: int, code: str, message: str, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return anthropic_error(status, code, message, request_id)

    def new_shaper(self, policy: ReasoningPolicy) -> MessagesShaper:
        return MessagesShaper(policy)


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def _is_safe_block(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    return isinstance(kind, str) and (
        kind in SAFE_BLOCK_TYPES or kind.endswith(_SAFE_BLOCK_SUFFIXES)
    )


def _block_chars(block: Any) -> int:
    if isinstance(block, dict) and isinstance(block.get("thinking"), str):
        return len(block["thinking"])
    return 0


def _thinking_tokens(usage: dict[str, Any]) -> int | None:
    return nested_int(usage, "output_tokens_details", "thinking_tokens")


class MessagesShaper(ResponseShaper):
    """Shapes one Messages response (JSON) or one Messages event stream."""

    def __init__(self, policy: ReasoningPolicy) -> None:
        super().__init__(policy)
        self._index_map: dict[int, int] = {}
        self._dropped: set[int] = set()
        self._next_index = 0
        self._usage: dict[str, Any] = {}

    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        return anthropic_error(status, code, message)

    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        error = anthropic_error(502, code, message)
        return [SSEEvent(data=dumps({"type": "error", "error": error["error"]}), event="error")]

    def _note_block(self, block: Any) -> None:
        chars = _block_chars(block)
        self._add_reasoning_chars(chars, 0 if self.removes_reasoning else chars)

    # -- whole messages -------------------------------------------------------------------

    def shape_json(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        usage = document.get("usage")
        if isinstance(usage, dict):
            self._record_usage(usage, _thinking_tokens(usage))
        return self._shape_message(document, count=True)

    def _shape_message(self, message: dict[str, Any], *, count: bool) -> dict[str, Any]:
        content = message.get("content")
        if not isinstance(content, list):
            return message
        kept: list[Any] = []
        for block in content:
            if count:
                self._note_block(block)
            if not self.removes_reasoning or _is_safe_block(block):
                kept.append(block)
            elif count:
                self.stats.removed_items += 1
        return message if len(kept) == len(content) else {**message, "content": kept}

    # -- streams --------------------------------------------------------------------------

    def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        try:
            document = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            return self._unknown(event)
        shaped = self._shape_stream_document(document)
        if not self.removes_reasoning or shaped is document:
            return [event]
        if shaped is None:
            return []
        return [SSEEvent(data=dumps(shaped), event=event.event, id=event.id, retry=event.retry)]

    def _unknown(self, event: SSEEvent) -> list[SSEEvent]:
        if not self.removes_reasoning:
            return [event]
        self.stats.removed_unknown += 1
        return []

    def _shape_stream_document(self, document: dict[str, Any]) -> dict[str, Any] | None:
        kind = document.get("type")
        if kind == "message_start":
            message = document.get("message")
            if not isinstance(message, dict):
                return document
            usage = message.get("usage")
            if isinstance(usage, dict):
                self._usage = dict(usage)
                self._record_usage(dict(self._usage), _thinking_tokens(self._usage))
            shaped = self._shape_message(message, count=True)
            return document if shaped is message else {**document, "message": shaped}
        if kind == "message_delta":
            usage = document.get("usage")
            if isinstance(usage, dict):
                # message_delta usage is cumulative: its fields replace message_start's.
                self._usage.update(usage)
                self._record_usage(dict(self._usage), _thinking_tokens(self._usage))
            return document
        if kind in _KEPT_EVENTS:
            return document
        index = document.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            return self._drop_unknown()
        if kind == "content_block_start":
            block = document.get("content_block")
            self._note_block(block)
            if _is_safe_block(block) or not self.removes_reasoning:
                self._index_map[index] = self._next_index
                self._next_index += 1
            else:
                self._dropped.add(index)
                self.stats.removed_items += 1
                return None
        elif kind == "content_block_delta":
            delta = document.get("delta")
            if index in self._dropped or not isinstance(delta, dict):
                if isinstance(delta, dict) and isinstance(delta.get("thinking"), str):
                    self._add_reasoning_chars(len(delta["thinking"]))
                return None
            if not self.removes_reasoning:
                if isinstance(delta.get("thinking"), str):
                    chars = len(delta["thinking"])
                    self._add_reasoning_chars(chars, chars)
                return document
            if delta.get("type") not in SAFE_DELTA_TYPES:
                return self._drop_unknown()
        elif kind == "content_block_stop":
            if index in self._dropped:
                return None
        else:
            return self._drop_unknown()
        new_index = self._index_map.get(index)
        if new_index is None:
            new_index = index - sum(1 for d in self._dropped if d < index)
        return document if new_index == index else {**document, "index": new_index}

    def _drop_unknown(self) -> dict[str, Any] | None:
        """Remove an event of a kind not known to be free of reasoning."""
        if self.removes_reasoning:
            self.stats.removed_unknown += 1
        return None
