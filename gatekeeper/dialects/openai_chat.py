"""OpenAI Chat Completions (``POST /v1/chat/completions``) and compatible servers.

Reasoning text is a vendor sibling of ``content`` on ``choices[].message`` and
``choices[].delta``: ``reasoning_content`` (DeepSeek, older vLLM), ``reasoning`` (vLLM,
OpenRouter) and ``reasoning_details`` (OpenRouter). api.openai.com itself sends none.

The shaper lives in ``_chat_shaper``; this module reads requests and restores kept reasoning
into a request's history (continuity).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gatekeeper.dialects._common import (
    OpenAIDialect,
    object_items,
    opt_bool,
    opt_int,
    opt_list,
    opt_object,
    opt_str,
    request_facts,
    require_object,
)
from gatekeeper.dialects.base import RequestFacts
from gatekeeper.reasoning.chat import ChatShaper

__all__ = ["OpenAIChat"]


class OpenAIChat(OpenAIDialect):
    """The Chat Completions dialect."""

    name: ClassVar[str] = "openai_chat"
    paths: ClassVar[tuple[str, ...]] = ("/v1/chat/completions",)
    history_markers: ClassVar[tuple[bytes, ...]] = (b'"tool_calls"',)
    shaper = ChatShaper

    def read_request(self, body: Any) -> RequestFacts:
        body = require_object(body)
        messages = object_items(opt_list(body, "messages") or [], "messages")
        max_tokens = opt_int(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = opt_int(body, "max_tokens")
        tools = opt_list(body, "tools") or opt_list(body, "functions") or []
        return request_facts(
            self,
            body,
            messages=len(messages),
            prompt=messages,
            max_tokens=max_tokens,
            has_tools=bool(tools),
            has_tool_results=any(m.get("role") in ("tool", "function") for m in messages),
            reasoning_requested=_reasoning_requested(body),
        )

    def history_keys(self, body: Any) -> list[str]:
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return []
        return [f"openai_chat:tc:{i}" for m in messages for i in _restorable(m)]

    def restore_history(self, body: Any, found: dict[str, Any]) -> tuple[Any, int]:
        """Put the kept reasoning keys back on assistant messages that called tools (DeepSeek
        rejects a tool turn replayed without its ``reasoning_content``)."""
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not found:
            return body, 0
        restored = 0
        new_messages = list(messages)
        for position, message in enumerate(messages):
            value = next(
                (found[k] for i in _restorable(message) if (k := f"openai_chat:tc:{i}") in found),
                None,
            )
            if not isinstance(value, dict):
                continue
            merged = {**message, **value}
            if merged != message:
                new_messages[position] = merged
                restored += 1
        return ({**body, "messages": new_messages}, restored) if restored else (body, 0)


def _reasoning_requested(body: dict[str, Any]) -> bool:
    """Whether any of the vendor switches asks for reasoning (see dialects.md §1.1)."""
    effort = opt_str(body, "reasoning_effort")
    if effort is not None and effort != "none":
        return True
    thinking = opt_object(body, "thinking")  # DeepSeek
    if thinking is not None and thinking.get("type") != "disabled":
        return True
    reasoning = opt_object(body, "reasoning")  # OpenRouter
    if (
        reasoning is not None
        and reasoning.get("enabled") is not False
        and reasoning.get("exclude") is not True
        and reasoning.get("effort") != "none"
    ):
        return True
    if opt_bool(body, "include_reasoning"):  # OpenRouter, legacy
        return True
    kwargs = opt_object(body, "chat_template_kwargs")  # vLLM
    return kwargs is not None and any(
        kwargs.get(key) is True for key in ("enable_thinking", "thinking")
    )


def _restorable(message: Any) -> list[str]:
    """The tool call ids of an assistant message that called tools."""
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return []
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)]
