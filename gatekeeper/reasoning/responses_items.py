"""Responses output items and events: which are safe, how a reasoning item is rewritten per mode
(whole, and as the events the stream sends for it), and how kept reasoning items go back into a
request's ``input`` (continuity, dialects.md §2.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatekeeper.reasoning.trace import TraceBlock, TraceEditor

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
_PREFIX = "openai_responses"

SNAPSHOT_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: Events that belong to no output item and carry no reasoning.
ITEMLESS_EVENTS = SNAPSHOT_EVENTS | {"error", "keepalive"}
USAGE_PATH = ("output_tokens_details", "reasoning_tokens")
SUMMARY_EVENTS = {
    "response.reasoning_summary_part.added": ("summary", "added"),
    "response.reasoning_summary_part.done": ("summary", "done"),
    "response.reasoning_summary_text.delta": ("summary", "delta"),
    "response.reasoning_summary_text.done": ("summary", "text_done"),
    "response.reasoning_text.delta": ("content", "delta"),
    "response.reasoning_text.done": ("content", "text_done"),
    "response.content_part.added": ("content", "added"),
    "response.content_part.done": ("content", "done"),
}


PART_TYPES = (("summary", "summary_text"), ("content", "reasoning_text"))


def below(dropped: set[int], index: int) -> int:
    return sum(1 for d in dropped if d < index)


@dataclass
class StreamItem:
    """A reasoning item of a stream, from ``output_item.added`` to ``output_item.done``."""

    id: str
    trace: TraceBlock
    had_content: bool
    #: Exposed text per forwarded part, and the parts left out (``truncate``).
    parts: dict[tuple[str, int], str] = field(default_factory=dict)
    skipped: set[tuple[str, int]] = field(default_factory=set)
    with_deltas: set[tuple[str, int]] = field(default_factory=set)
    fed: bool = False


def is_safe_item(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") in SAFE_ITEM_TYPES


def shape_message_item(item: dict[str, Any]) -> dict[str, Any]:
    """A kept item without content parts that may carry reasoning (same object if none)."""
    content = item.get("content")
    if item.get("type") != "message" or not isinstance(content, list):
        return item
    kept = [p for p in content if isinstance(p, dict) and p.get("type") in SAFE_PART_TYPES]
    return item if len(kept) == len(content) else {**item, "content": kept}


def item_texts(item: dict[str, Any]) -> list[tuple[str, int, str]]:
    """``(field, index, text)`` of a reasoning item's summary parts, then its content parts."""
    found: list[tuple[str, int, str]] = []
    for field_name in ("summary", "content"):
        parts = item.get(field_name)
        if isinstance(parts, list):
            for index, part in enumerate(parts):
                text = part.get("text") if isinstance(part, dict) else None
                found.append((field_name, index, text if isinstance(text, str) else ""))
    return found


def skeleton(item: dict[str, Any], keep_content: bool) -> dict[str, Any]:
    """A reasoning item with no text and no opaque payload: its id, type and status."""
    shaped: dict[str, Any] = {k: item[k] for k in ("id", "type", "status") if k in item}
    shaped["summary"] = []
    if keep_content:
        shaped["content"] = []
    return shaped


async def shape_reasoning_item(
    item: dict[str, Any], trace: TraceBlock, editor: TraceEditor
) -> dict[str, Any]:
    """A whole reasoning item as the client sees it under ``editor``'s mode.

    ``full`` returns ``item``; ``drop`` too (the caller removes it); the text is counted either
    way. The other modes return a new item, as their stream events build it.
    """
    mode = editor.mode
    texts = item_texts(item)
    if mode in ("full", "drop"):
        for _, _, text in texts:
            trace.feed(text)
        return item
    if mode == "truncate":
        shaped = skeleton(item, keep_content="content" in item)
        for field_name, _, text in texts:
            if editor.spent:
                trace.keep(text)
                continue
            part_type = "summary_text" if field_name == "summary" else "reasoning_text"
            shaped.setdefault(field_name, []).append({"type": part_type, "text": trace.feed(text)})
        return shaped
    for position, (_, _, text) in enumerate(texts):
        if mode == "summary" and position and trace.text:
            trace.keep("\n")
        trace.keep(text)
    shown = await trace.close()
    shaped = skeleton(item, keep_content=False)
    if shown:
        shaped["summary"] = [{"type": "summary_text", "text": shown}]
    return shaped


def keep_keys(item: dict[str, Any], follower: Any) -> list[str]:
    """The keys a kept reasoning item is found by: its own id (a client that replays the
    rewritten item), and the id and ``call_id`` of the item it preceded (a client that replays
    output without it)."""
    keys = []
    if isinstance(item.get("id"), str):
        keys.append(f"{_PREFIX}:rs:{item['id']}")
    if isinstance(follower, dict) and follower.get("type") != "reasoning":
        if isinstance(follower.get("id"), str):
            keys.append(f"{_PREFIX}:follow:{follower['id']}")
        if isinstance(follower.get("call_id"), str):
            keys.append(f"{_PREFIX}:call:{follower['call_id']}")
    return keys


def input_keys(body: Any) -> list[str]:
    """Keys the ``input`` items of a request may match."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    keys: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        item_id, call_id = item.get("id"), item.get("call_id")
        if item.get("type") == "reasoning":
            if isinstance(item_id, str):
                keys.append(f"{_PREFIX}:rs:{item_id}")
            continue
        if isinstance(item_id, str):
            keys.append(f"{_PREFIX}:follow:{item_id}")
        if isinstance(call_id, str) and item.get("type") != "function_call_output":
            keys.append(f"{_PREFIX}:call:{call_id}")
    return keys


def restore_input(body: Any, found: dict[str, Any]) -> tuple[Any, int]:
    """``body`` with original reasoning items back in ``input``: in place of a rewritten item
    with the same id, or right before the item they preceded when the client left them out."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list) or not found:
        return body, 0
    present = {i.get("id") for i in items if isinstance(i, dict) and i.get("type") == "reasoning"}
    rebuilt: list[Any] = []
    restored = 0
    for item in items:
        if not isinstance(item, dict):
            rebuilt.append(item)
            continue
        if item.get("type") == "function_call_output":
            rebuilt.append(item)
            continue
        if item.get("type") == "reasoning":
            original = found.get(f"{_PREFIX}:rs:{item.get('id')}")
            if isinstance(original, dict) and original != item:
                rebuilt.append(original)
                restored += 1
            else:
                rebuilt.append(item)
            continue
        original = found.get(f"{_PREFIX}:follow:{item.get('id')}") or found.get(
            f"{_PREFIX}:call:{item.get('call_id')}"
        )
        if isinstance(original, dict) and original.get("id") not in present:
            rebuilt.append(original)
            present.add(original.get("id"))
            restored += 1
        rebuilt.append(item)
    return ({**body, "input": rebuilt}, restored) if restored else (body, 0)


# -- stream events of a rewritten reasoning item -----------------------------------------


def with_part_text(document: dict[str, Any], step: str, text: str) -> dict[str, Any]:
    if step == "text_done":
        return {**document, "text": text}
    part = document.get("part")
    if isinstance(part, dict) and "text" in part:
        return {**document, "part": {**part, "text": text}}
    return document


def summary_part_events(
    document: dict[str, Any], item_id: str, part: dict[str, Any]
) -> list[dict[str, Any]]:
    """The four events of one summary part, numbered like the ``output_item.done`` after."""
    at: dict[str, Any] = {"item_id": item_id, "output_index": document["output_index"]}
    at["summary_index"] = 0
    if "sequence_number" in document:
        at["sequence_number"] = document["sequence_number"]
    empty = {"type": "summary_text", "text": ""}
    text = part["text"]
    return [
        {"type": "response.reasoning_summary_part.added", **at, "part": empty},
        {"type": "response.reasoning_summary_text.delta", **at, "delta": text},
        {"type": "response.reasoning_summary_text.done", **at, "text": text},
        {"type": "response.reasoning_summary_part.done", **at, "part": part},
    ]
