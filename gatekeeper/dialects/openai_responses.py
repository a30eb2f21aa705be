"""OpenAI Responses (``POST /v1/responses``) and compatible servers (e.g. OpenRouter).

Reasoning is an output item of type ``reasoning`` (summary parts, raw ``reasoning_text``
content parts, ``encrypted_content``). Removing one means removing every stream event of that
item, decrementing ``output_index`` on later events, renumbering ``sequence_number`` so it stays
contiguous, and removing the item from the ``response`` snapshots, so the stream, the snapshots
and the SDK's accumulated response all agree (dialects.md §2.4).

Allow-lists decide what may stay when reasoning is removed: output items of a type in
``SAFE_ITEM_TYPES``, content parts of a type in ``SAFE_PART_TYPES``, and events that either
belong to such an item (they carry its ``output_index``) or are in ``_ITEMLESS_EVENTS``. Anything
else, including item types added to the API later (``compaction`` is one: opaque and possibly
derived from reasoning), is removed and counted in ``stats.removed_unknown``/``removed_items``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from gatekeeper.contract import PromptFeatures, ReasoningPolicy
from gatekeeper.dialects._common import (
    dumps,
    nested_int,
    object_items,
    openai_error,
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

#: Output item types (openai-python ``ResponseOutputItem``) that carry no reasoning.
SAFE_ITEM_TYPES = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "file_search_call",
        "web_search_call",
        "computer_call",
        "computer_call_output",
        "code_interpreter_call",
        "image_generation_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "tool_search_call",
        "tool_search_output",
        "program",
        "program_output",
        "additional_tools",
    }
)
#: Content part types of a message item that carry no reasoning.
SAFE_PART_TYPES = frozenset({"output_text", "refusal"})
_SNAPSHOT_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: Events that belong to no output item and carry no reasoning.
_ITEMLESS_EVENTS = _SNAPSHOT_EVENTS | {"error", "keepalive"}


class OpenAIResponses(Dialect):
    """The Responses dialect."""

    name: ClassVar[str] = "openai_responses"
    paths: ClassVar[tuple[str, ...]] = ("/v1/responses",)

    def read_request(self, body: Any) -> RequestFacts:
        body = require_object(body)
        raw_input = body.get("input")
        if raw_input is None or isinstance(raw_input, str):
            items: list[dict[str, Any]] = []
            count = 0 if raw_input is None else 1
        elif isinstance(raw_input, list):
            items = object_items(raw_input, "input")
            count = len(items)
        else:
            raise RequestBodyError("'input' must be a string or an array of items")
        max_tokens = opt_int(body, "max_output_tokens")
        chars = text_chars(raw_input) + len(opt_str(body, "instructions") or "")
        features = PromptFeatures(
            messages=count,
            chars=chars,
            has_tools=bool(opt_list(body, "tools")),
            has_tool_results=any(str(i.get("type", "")).endswith("_output") for i in items),
        )
        reasoning = opt_object(body, "reasoning")
        include = opt_list(body, "include") or []
        return RequestFacts(
            model=opt_str(body, "model"),
            stream=bool(opt_bool(body, "stream")),
            reasoning_requested=(
                (reasoning is not None and reasoning.get("effort") != "none")
                or "reasoning.encrypted_content" in include
            ),
            max_tokens=max_tokens,
            estimated_tokens=estimate_tokens(chars)
            + (max_tokens if max_tokens is not None else self.default_output_tokens),
            prompt_features=features,
        )

    def error_body(
        self, status: int, code: str, message: str, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return openai_error(status, code, message)

    def new_shaper(self, policy: ReasoningPolicy) -> ResponsesShaper:
        return ResponsesShaper(policy)


def _item_reasoning_chars(item: Any) -> int:
    if not isinstance(item, dict):
        return 0
    total = 0
    for key in ("summary", "content"):
        parts = item.get(key)
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += len(part["text"])
    return total


def _is_safe_item(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") in SAFE_ITEM_TYPES


def _shape_item(item: dict[str, Any]) -> dict[str, Any]:
    """A kept item without content parts that may carry reasoning (same object if none)."""
    content = item.get("content")
    if item.get("type") != "message" or not isinstance(content, list):
        return item
    kept = [p for p in content if isinstance(p, dict) and p.get("type") in SAFE_PART_TYPES]
    return item if len(kept) == len(content) else {**item, "content": kept}


def _below(dropped: set[int], index: int) -> int:
    return sum(1 for d in dropped if d < index)


class ResponsesShaper(ResponseShaper):
    """Shapes one Responses object (JSON) or one Responses event stream."""

    def __init__(self, policy: ReasoningPolicy) -> None:
        super().__init__(policy)
        self._dropped_outputs: set[int] = set()
        self._dropped_ids: set[str] = set()
        self._dropped_parts: dict[int, set[int]] = {}
        # Reasoning characters per removed item: streamed deltas vs. the final item's text; the
        # larger counts, so an item is counted once whichever of the two a server sends.
        self._delta_chars: dict[int, int] = {}
        self._final_chars: dict[int, int] = {}
        self._next_sequence: int | None = None

    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        return openai_error(status, code, message)

    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        # A Responses ``error`` event that also carries an ``error`` object: openai-python raises
        # APIError on the latter, clients routing on ``type`` see a well-formed error event.
        document: dict[str, Any] = {"type": "error", "code": code, "message": message}
        document["param"] = None
        if self._next_sequence is not None:
            document["sequence_number"] = self._next_sequence
            self._next_sequence += 1
        document["error"] = openai_error(502, code, message)["error"]
        return [SSEEvent(data=dumps(document), event="error")]

    # -- whole responses ------------------------------------------------------------------

    def shape_json(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        self._record_response_usage(document)
        return self._shape_response(document, count=True)

    def _shape_response(self, response: Any, *, count: bool) -> Any:
        if not isinstance(response, dict) or not isinstance(response.get("output"), list):
            return response
        output: list[Any] = response["output"]
        kept: list[Any] = []
        changed = False
        for item in output:
            if count and isinstance(item, dict) and item.get("type") == "reasoning":
                chars = _item_reasoning_chars(item)
                self._add_reasoning_chars(chars, 0 if self.removes_reasoning else chars)
            if not self.removes_reasoning:
                kept.append(item)
            elif _is_safe_item(item):
                shaped = _shape_item(item)
                changed = changed or shaped is not item
                kept.append(shaped)
            else:
                changed = True
                if count:
                    self.stats.removed_items += 1
        return {**response, "output": kept} if changed else response

    def _record_response_usage(self, response: Any) -> None:
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            tokens = nested_int(usage, "output_tokens_details", "reasoning_tokens")
            self._record_usage(usage, tokens)

    # -- streams --------------------------------------------------------------------------

    def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        if event.data.startswith("[DONE]"):
            return [event]
        try:
            document = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            if not self.removes_reasoning:
                return [event]
            self.stats.removed_unknown += 1
            return []
        shaped = self._shape_stream_document(document)
        if not self.removes_reasoning:
            return [event]
        if shaped is None:
            return []
        sequence = shaped.get("sequence_number")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            if self._next_sequence is None:
                self._next_sequence = sequence
            if sequence != self._next_sequence:
                shaped = {**shaped, "sequence_number": self._next_sequence}
            self._next_sequence += 1
        if shaped is document:
            return [event]
        return [SSEEvent(data=dumps(shaped), event=event.event, id=event.id, retry=event.retry)]

    def _shape_stream_document(self, document: dict[str, Any]) -> dict[str, Any] | None:
        """The event to send in place of ``document``, or ``None`` to remove it."""
        kind = document.get("type")
        if kind in _SNAPSHOT_EVENTS:
            if kind in _TERMINAL_EVENTS:
                self._record_response_usage(document.get("response"))
            response = self._shape_response(document.get("response"), count=False)
            if response is document.get("response"):
                return document
            return {**document, "response": response}
        position = document.get("output_index")
        if isinstance(position, int) and not isinstance(position, bool):
            return self._shape_item_event(document, str(kind), position)
        if document.get("item_id") in self._dropped_ids:
            return None
        if kind in _ITEMLESS_EVENTS:
            return document
        if self.removes_reasoning:
            self.stats.removed_unknown += 1
        return None

    def _shape_item_event(
        self, document: dict[str, Any], kind: str, position: int
    ) -> dict[str, Any] | None:
        item = document.get("item")
        if kind == "response.output_item.added" and not _is_safe_item(item):
            self._dropped_outputs.add(position)
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                self._dropped_ids.add(item["id"])
            if self.removes_reasoning:
                self.stats.removed_items += 1
        if position in self._dropped_outputs:
            self._count_removed(document, kind, position)
            return None
        if "reasoning" in kind:
            # A reasoning event on an item that is not a reasoning item: never expected, and
            # never forwarded when reasoning is removed.
            self._count_removed(document, kind, position)
            return None
        shaped = document
        parts = self._dropped_parts.get(position)
        content_index = document.get("content_index")
        if isinstance(content_index, int):
            part = document.get("part")
            if (
                kind.startswith("response.content_part.")
                and isinstance(part, dict)
                and part.get("type") not in SAFE_PART_TYPES
            ):
                parts = self._dropped_parts.setdefault(position, set())
                parts.add(content_index)
            if parts:
                if content_index in parts:
                    return None
                renumbered = content_index - _below(parts, content_index)
                if renumbered != content_index:
                    shaped = {**shaped, "content_index": renumbered}
        if isinstance(item, dict):
            new_item = _shape_item(item)
            if new_item is not item:
                shaped = {**shaped, "item": new_item}
        renumbered = position - _below(self._dropped_outputs, position)
        if renumbered != position:
            shaped = {**shaped, "output_index": renumbered}
        return shaped

    def _count_removed(self, document: dict[str, Any], kind: str, position: int) -> None:
        if kind.endswith(".delta") and isinstance(document.get("delta"), str):
            self._delta_chars[position] = self._delta_chars.get(position, 0) + len(
                document["delta"]
            )
        elif kind == "response.output_item.done":
            self._final_chars[position] = _item_reasoning_chars(document.get("item"))
        else:
            return
        seen = sum(
            max(self._delta_chars.get(p, 0), self._final_chars.get(p, 0))
            for p in self._delta_chars.keys() | self._final_chars.keys()
        )
        self.stats.seen_chars = seen
        self.stats.exposed_chars = 0 if self.removes_reasoning else seen
        self.stats.refresh()
