"""The Anthropic Messages shaper: ``thinking`` and ``redacted_thinking`` content blocks.

Per mode, a ``thinking`` block is removed (``drop``: its ``content_block_start/delta/stop``
events go, later blocks' ``index`` is renumbered so indices stay 0..n-1 in arrival order) or kept
with rewritten text (``summary``, ``truncate``, ``redact``): its ``thinking_delta`` events carry
what the mode shows (the summary arrives as one delta just before ``content_block_stop``), and
its ``signature`` is replaced by an opaque gatekeeper handle (``gk1.…``): the original signature
would not match the rewritten text, and the handle lets continuity put the original block back
when the client sends the turn again. A ``redacted_thinking`` block (no readable text) keeps its
shape in ``redact`` mode, with the handle as its ``data``, and is removed in the other modes.
``event:`` lines are kept (the SDK routes on them).

Allow-lists decide what else may stay: blocks of a type in ``SAFE_BLOCK_TYPES`` or ending in
``_tool_use``/``_tool_result``, deltas of a type in ``SAFE_DELTA_TYPES``, and the event types in
``_KEPT_EVENTS``. Anything else, including block types added to the API later, is removed.

``usage`` keeps its totals; ``output_tokens_details.thinking_tokens``, when present, is set to
the thinking tokens the client was shown (``ResponseShaper._exposed_usage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning.shaper import ResponseShaper
from gatekeeper.reasoning.sse import SSEEvent
from gatekeeper.reasoning.trace import ShapingOptions, TraceBlock, handle
from gatekeeper.wire import anthropic_error, dumps, nested_int

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
REASONING_BLOCK_TYPES = frozenset({"thinking", "redacted_thinking"})
_KEPT_EVENTS = frozenset({"message_start", "message_delta", "message_stop", "ping", "error"})
USAGE_PATH = ("output_tokens_details", "thinking_tokens")


def is_safe_block(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    return isinstance(kind, str) and (
        kind in SAFE_BLOCK_TYPES or kind.endswith(_SAFE_BLOCK_SUFFIXES)
    )


@dataclass
class _Open:
    """A reasoning block of a stream, between its start and its stop."""

    kind: str
    trace: TraceBlock
    slot: int
    forwarded: bool
    signature: str = ""
    data: str = ""
    parts: list[str] = field(default_factory=list)


class MessagesShaper(ResponseShaper):
    """Shapes one Messages response (JSON) or one Messages event stream."""

    def __init__(self, policy: ReasoningPolicy, options: ShapingOptions | None = None) -> None:
        super().__init__(policy, options)
        self._index_map: dict[int, int] = {}
        self._dropped: set[int] = set()
        self._next_index = 0
        self._usage: dict[str, Any] = {}
        self._message_id = ""
        self._open: dict[int, _Open] = {}
        # Continuity: the message's blocks in order, originals for reasoning, None for others.
        self._slots: list[dict[str, Any] | None] = []
        self._complete = True
        self._tool_use_ids: list[str] = []
        self._handles: list[str] = []
        self._kept = False

    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        return anthropic_error(status, code, message)

    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        error = anthropic_error(502, code, message)
        return [SSEEvent(data=dumps({"type": "error", "error": error["error"]}), event="error")]

    def _note_safe(self, block: dict[str, Any]) -> None:
        self._slots.append(None)
        if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
            self._tool_use_ids.append(block["id"])

    def _handle(self, index: int, original: dict[str, Any]) -> str:
        opaque = str(original.get("signature") or original.get("data") or "")
        value = handle(self._message_id, str(index), opaque, str(original.get("thinking", "")))
        self._handles.append(value)
        return value

    def _keep_message(self) -> None:
        """Keep the message's original reasoning under its tool_use ids (once, at its end)."""
        if self._kept:
            return
        self._kept = True
        if not self._tool_use_ids or not any(self._slots):
            return
        keys = [f"anthropic_messages:tu:{i}" for i in self._tool_use_ids]
        keys += [f"anthropic_messages:h:{h}" for h in self._handles]
        self._keep(keys, {"slots": self._slots}, complete=self._complete)

    def _usage_out(self, usage: dict[str, Any]) -> dict[str, Any]:
        self._record_usage(dict(usage), nested_int(usage, *USAGE_PATH))
        return self._exposed_usage(usage, USAGE_PATH)

    # -- whole messages -------------------------------------------------------------------

    async def shape_json(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        self._message_id = str(document.get("id", ""))
        shaped = await self._shape_message(document)
        self._keep_message()
        usage = document.get("usage")
        if isinstance(usage, dict):
            new_usage = self._usage_out(usage)
            if new_usage is not usage:
                shaped = {**shaped, "usage": new_usage}
        return shaped

    async def _shape_message(self, message: dict[str, Any]) -> dict[str, Any]:
        content = message.get("content")
        if not isinstance(content, list):
            return message
        kept: list[Any] = []
        changed = False
        for index, block in enumerate(content):
            shaped = await self._shape_block(index, block)
            changed = changed or shaped is not block
            if shaped is not None:
                kept.append(shaped)
        return {**message, "content": kept} if changed else message

    async def _shape_block(self, index: int, block: Any) -> Any:
        """A whole block as the client sees it (``None``: removed)."""
        if is_safe_block(block):
            self._note_safe(block)
            return block
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in REASONING_BLOCK_TYPES:
            if not self.removes_reasoning:
                return block
            self.stats.removed_items += 1
            return None
        trace = self.editor.block()
        text = block.get("thinking") if kind == "thinking" else None
        shown = await trace.whole(text if isinstance(text, str) else "")
        self._sync_chars()
        if not self.removes_reasoning:
            return block
        self._slots.append(block)
        self._complete = self._complete and trace.complete
        mode = self.editor.mode
        if mode == "drop" or (kind == "redacted_thinking" and mode != "redact"):
            self.stats.removed_items += 1
            return None
        if kind == "redacted_thinking":
            return {"type": "redacted_thinking", "data": self._handle(index, block)}
        return {"type": "thinking", "thinking": shown, "signature": self._handle(index, block)}

    # -- streams --------------------------------------------------------------------------

    async def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        try:
            document = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            return self._unknown(event)
        shaped = await self._shape_stream_document(document)
        if not self.removes_reasoning:
            return [event]
        return [
            event
            if doc is document
            else SSEEvent(
                data=dumps(doc),
                # Every frame keeps an ``event:`` line equal to its type (the SDK routes on it).
                event=str(doc.get("type")) if event.event is not None else None,
                id=event.id,
                retry=event.retry if position == 0 else None,
            )
            for position, doc in enumerate(shaped)
        ]

    async def finish(self) -> list[SSEEvent]:
        self._keep_message()
        return []

    def _unknown(self, event: SSEEvent) -> list[SSEEvent]:
        if not self.removes_reasoning:
            return [event]
        self.stats.removed_unknown += 1
        return []

    async def _shape_stream_document(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        kind = document.get("type")
        if kind == "message_start":
            return [await self._message_start(document)]
        if kind == "message_delta":
            usage = document.get("usage")
            if not isinstance(usage, dict):
                return [document]
            # message_delta usage is cumulative: its fields replace message_start's.
            self._usage.update(usage)
            self._record_usage(dict(self._usage), nested_int(self._usage, *USAGE_PATH))
            new_usage = self._exposed_usage(usage, USAGE_PATH)
            return [document if new_usage is usage else {**document, "usage": new_usage}]
        if kind == "message_stop":
            self._keep_message()
            return [document]
        if kind in _KEPT_EVENTS:
            return [document]
        index = document.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            return self._drop_unknown()
        if kind == "content_block_start":
            return self._block_start(document, index)
        if kind == "content_block_delta":
            return self._block_delta(document, index)
        if kind == "content_block_stop":
            return await self._block_stop(document, index)
        return self._drop_unknown()

    async def _message_start(self, document: dict[str, Any]) -> dict[str, Any]:
        message = document.get("message")
        if not isinstance(message, dict):
            return document
        self._message_id = str(message.get("id", ""))
        usage = message.get("usage")
        new_usage = usage
        if isinstance(usage, dict):
            self._usage = dict(usage)
            new_usage = self._usage_out(usage)
        if isinstance(message.get("content"), list) and message["content"]:
            # Not expected (content arrives in block events); never forwarded unshaped.
            message = await self._shape_message(message)
        if new_usage is not usage:
            message = {**message, "usage": new_usage}
        return document if message is document.get("message") else {**document, "message": message}

    def _renumbered(self, document: dict[str, Any], index: int) -> dict[str, Any]:
        new_index = self._index_map.get(index)
        if new_index is None:
            new_index = index - sum(1 for d in self._dropped if d < index)
        return document if new_index == index else {**document, "index": new_index}

    def _block_start(self, document: dict[str, Any], index: int) -> list[dict[str, Any]]:
        block = document.get("content_block")
        kind = block.get("type") if isinstance(block, dict) else None
        if is_safe_block(block):
            assert isinstance(block, dict)
            self._note_safe(block)
        elif kind in REASONING_BLOCK_TYPES and isinstance(block, dict):
            return self._reasoning_start(document, index, block, str(kind))
        elif self.removes_reasoning:
            self._dropped.add(index)
            self.stats.removed_items += 1
            return []
        self._index_map[index] = self._next_index
        self._next_index += 1
        return [self._renumbered(document, index)]

    def _reasoning_start(
        self, document: dict[str, Any], index: int, block: dict[str, Any], kind: str
    ) -> list[dict[str, Any]]:
        mode = self.editor.mode
        forwarded = mode == "full" or (mode != "drop" and (kind == "thinking" or mode == "redact"))
        state = _Open(kind, self.editor.block(), len(self._slots), forwarded)
        self._open[index] = state
        self._slots.append(None)
        state.data = str(block.get("data", ""))
        state.signature = str(block.get("signature") or "")
        text = block.get("thinking")
        shown = state.trace.feed(text) if isinstance(text, str) else ""
        if isinstance(text, str):
            state.parts.append(text)
        self._sync_chars()
        if not forwarded:
            self._dropped.add(index)
            self.stats.removed_items += 1
            return []
        self._index_map[index] = self._next_index
        self._next_index += 1
        if mode == "full":
            return [self._renumbered(document, index)]
        if kind == "redacted_thinking":
            original = {"type": "redacted_thinking", "data": state.data}
            placeholder = {"type": "redacted_thinking", "data": self._handle(index, original)}
        else:
            placeholder = {"type": "thinking", "thinking": shown, "signature": ""}
        return [self._renumbered({**document, "content_block": placeholder}, index)]

    def _block_delta(self, document: dict[str, Any], index: int) -> list[dict[str, Any]]:
        delta = document.get("delta")
        state = self._open.get(index)
        if state is not None:
            if not isinstance(delta, dict):
                return [] if self.removes_reasoning else [document]
            text = delta.get("thinking")
            shown = ""
            if isinstance(text, str):
                shown = state.trace.feed(text)
                state.parts.append(text)
                self._sync_chars()
            if isinstance(delta.get("signature"), str):
                state.signature += delta["signature"]
            if self.editor.mode == "full":
                return [self._renumbered(document, index)]
            if not shown or not state.forwarded:
                return []
            shaped = {**document, "delta": {"type": "thinking_delta", "thinking": shown}}
            return [self._renumbered(shaped, index)]
        if index in self._dropped:
            return []
        if self.removes_reasoning and (
            not isinstance(delta, dict) or delta.get("type") not in SAFE_DELTA_TYPES
        ):
            return self._drop_unknown()
        return [self._renumbered(document, index)]

    async def _block_stop(self, document: dict[str, Any], index: int) -> list[dict[str, Any]]:
        state = self._open.pop(index, None)
        if state is None:
            return [] if index in self._dropped else [self._renumbered(document, index)]
        if state.kind == "thinking":
            original = {"type": "thinking", "thinking": "".join(state.parts)}
            original["signature"] = state.signature
        else:
            original = {"type": "redacted_thinking", "data": state.data}
        if self.removes_reasoning:
            self._slots[state.slot] = original
            self._complete = self._complete and state.trace.complete
        if self.editor.mode == "full":
            return [self._renumbered(document, index)]
        if not state.forwarded:
            return []
        out: list[dict[str, Any]] = []
        closing = await state.trace.close()
        self._sync_chars()
        at = {"type": "content_block_delta", "index": index}
        if closing and state.kind == "thinking":
            out.append({**at, "delta": {"type": "thinking_delta", "thinking": closing}})
        if state.kind == "thinking":
            token = self._handle(index, original)
            out.append({**at, "delta": {"type": "signature_delta", "signature": token}})
        out.append(document)
        return [self._renumbered(doc, index) for doc in out]

    def _drop_unknown(self) -> list[dict[str, Any]]:
        """Remove an event of a kind not known to be free of reasoning (``full`` mode forwards
        every event anyway)."""
        if self.removes_reasoning:
            self.stats.removed_unknown += 1
        return []
