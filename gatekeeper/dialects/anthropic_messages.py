"""Anthropic Messages (``POST /v1/messages``).

Reasoning is a content block of type ``thinking`` (text + signature) or ``redacted_thinking``
(opaque data); the shaper (``_messages_shaper``) removes or rewrites them per mode.

Continuity (dialects.md §3.5): an assistant turn that used tools must come back with its
thinking blocks exactly as received. When gatekeeper removed or rewrote them, it kept the
originals under the turn's ``tool_use`` ids (and the handles it put in place of signatures);
``restore_history`` puts them back at their original positions before the request is forwarded.
A rewritten block gatekeeper cannot restore (another subject's, expired) is removed instead: its
handle is not a signature the API would accept.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gatekeeper.dialects._common import (
    object_items,
    opt_int,
    opt_list,
    opt_object,
    request_facts,
    require_object,
)
from gatekeeper.dialects.base import Dialect, RequestBodyError, RequestFacts
from gatekeeper.reasoning.messages import REASONING_BLOCK_TYPES, MessagesShaper
from gatekeeper.reasoning.trace import HANDLE_PREFIX
from gatekeeper.wire import anthropic_error

__all__ = ["AnthropicMessages"]


class AnthropicMessages(Dialect):
    """The Anthropic Messages dialect."""

    name: ClassVar[str] = "anthropic_messages"
    paths: ClassVar[tuple[str, ...]] = ("/v1/messages",)
    history_markers: ClassVar[tuple[bytes, ...]] = (b'"tool_use"', HANDLE_PREFIX.encode())
    shaper = MessagesShaper

    def read_request(self, body: Any) -> RequestFacts:
        body = require_object(body)
        messages = object_items(opt_list(body, "messages") or [], "messages")
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            raise RequestBodyError("'system' must be a string or an array of text blocks")
        max_tokens = opt_int(body, "max_tokens")
        thinking = opt_object(body, "thinking")
        return request_facts(
            self,
            body,
            messages=len(messages),
            prompt=[messages, system],
            max_tokens=max_tokens,
            has_tools=bool(opt_list(body, "tools")),
            has_tool_results=any(_has_tool_result(m.get("content")) for m in messages),
            reasoning_requested=thinking is not None and thinking.get("type") != "disabled",
        )

    def error_body(
        self, status: int, code: str, message: str, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return anthropic_error(status, code, message, request_id)

    def history_keys(self, body: Any) -> list[str]:
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return []
        return [key for message in messages for key in _turn_keys(message)]

    def restore_history(self, body: Any, found: dict[str, Any]) -> tuple[Any, int]:
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return body, 0
        restored = 0
        changed = False
        new_messages = list(messages)
        for position, message in enumerate(messages):
            keys = _turn_keys(message)
            if not keys:
                continue
            value = next((found[k] for k in keys if k in found), None)
            slots = value.get("slots") if isinstance(value, dict) else None
            content: list[Any] = message["content"]
            count = 0
            if isinstance(slots, list):
                new_content, count = _refill(content, slots)
            else:
                new_content = [b for b in content if not _is_placeholder(b)]
            if new_content != content:
                new_messages[position] = {**message, "content": new_content}
                changed = True
                restored += count
        return ({**body, "messages": new_messages}, restored) if changed else (body, 0)


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def _is_placeholder(block: Any) -> bool:
    """A thinking block gatekeeper rewrote (its signature or data is a gatekeeper handle)."""
    if not isinstance(block, dict) or block.get("type") not in REASONING_BLOCK_TYPES:
        return False
    opaque = block.get("signature") if block.get("type") == "thinking" else block.get("data")
    return isinstance(opaque, str) and opaque.startswith(HANDLE_PREFIX)


def _turn_keys(message: Any) -> list[str]:
    """Vault keys an assistant turn may match: its tool_use ids and gatekeeper handles."""
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return []
    content = message.get("content")
    if not isinstance(content, list):
        return []
    keys: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
            keys.append(f"anthropic_messages:tu:{block['id']}")
        elif _is_placeholder(block):
            opaque = block.get("signature") or block.get("data")
            keys.append(f"anthropic_messages:h:{opaque}")
    return keys


def _refill(content: list[Any], slots: list[Any]) -> tuple[list[Any], int]:
    """The turn with its original reasoning blocks back in their places.

    ``slots`` lists the original message's blocks in order: the reasoning blocks themselves,
    ``None`` for every other block. The client's own blocks, without any reasoning block it
    sent, fill the ``None`` slots in order; any left over follow.
    """
    others = [
        b for b in content if not (isinstance(b, dict) and b.get("type") in REASONING_BLOCK_TYPES)
    ]
    rebuilt: list[Any] = []
    restored = 0
    position = 0
    for slot in slots:
        if isinstance(slot, dict):
            rebuilt.append(slot)
            restored += 1
        elif position < len(others):
            rebuilt.append(others[position])
            position += 1
    rebuilt.extend(others[position:])
    return rebuilt, restored
