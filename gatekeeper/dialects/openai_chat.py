"""OpenAI Chat Completions (``POST /v1/chat/completions``) and compatible servers.

Reasoning text is a vendor sibling of ``content`` on ``choices[].message`` and
``choices[].delta``: ``reasoning_content`` (DeepSeek, older vLLM), ``reasoning`` (vLLM,
OpenRouter) and ``reasoning_details`` (OpenRouter). api.openai.com itself sends none.

When reasoning is removed, the message/delta keeps only keys known to carry no reasoning
(``_SAFE_MESSAGE_KEYS``); any other key, including vendor keys not known yet, is removed too.
A stream chunk left with nothing to say is dropped, as if the model had produced no reasoning;
chunks with a ``finish_reason``, with ``usage`` or with the first ``role`` of a choice are kept.
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
    RequestFacts,
    ResponseShaper,
    estimate_tokens,
)
from gatekeeper.shaping.sse import SSEEvent

#: Keys of a message or delta that never carry reasoning. Everything else is removed in the
#: modes that remove reasoning (an allow-list: a new vendor reasoning key cannot leak).
_SAFE_MESSAGE_KEYS = frozenset(
    {
        "role",
        "content",
        "refusal",
        "tool_calls",
        "function_call",
        "audio",
        "annotations",
        "name",
        "tool_call_id",
        "images",
    }
)
#: Keys known to hold reasoning text (counted in stats).
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_EMPTY: tuple[Any, ...] = (None, "", [], {})


class OpenAIChat(Dialect):
    """The Chat Completions dialect."""

    name: ClassVar[str] = "openai_chat"
    paths: ClassVar[tuple[str, ...]] = ("/v1/chat/completions",)

    def read_request(self, body: Any) -> RequestFacts:
        body = require_object(body)
        messages = object_items(opt_list(body, "messages") or [], "messages")
        max_tokens = opt_int(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = opt_int(body, "max_tokens")
        tools = opt_list(body, "tools") or opt_list(body, "functions") or []
        chars = text_chars(messages)
        features = PromptFeatures(
            messages=len(messages),
            chars=chars,
            has_tools=bool(tools),
            has_tool_results=any(m.get("role") in ("tool", "function") for m in messages),
        )
        return RequestFacts(
            model=opt_str(body, "model"),
            stream=bool(opt_bool(body, "stream")),
            reasoning_requested=_reasoning_requested(body),
            max_tokens=max_tokens,
            estimated_tokens=estimate_tokens(chars)
            + (max_tokens if max_tokens is not None else self.default_output_tokens),
            prompt_features=features,
        )

    def error_body(
        self, status: int, code: str, message: str, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return openai_error(status, code, message)

    def new_shaper(self, policy: ReasoningPolicy) -> ChatShaper:
        return ChatShaper(policy)


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


def _reasoning_chars(message: dict[str, Any]) -> int:
    """Reasoning characters in a message/delta. Servers repeat the same text under several keys
    (``reasoning`` + ``reasoning_details``, or ``reasoning`` + ``reasoning_content``), so the
    longest one counts."""
    best = 0
    for key in _REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str):
            best = max(best, len(value))
    details = message.get("reasoning_details")
    if isinstance(details, list):
        total = 0
        for detail in details:
            if isinstance(detail, dict):
                for key in ("text", "summary"):
                    if isinstance(detail.get(key), str):
                        total += len(detail[key])
        best = max(best, total)
    return best


def _strip(message: dict[str, Any]) -> dict[str, Any]:
    """The message/delta without any key outside the allow-list (the same object if none)."""
    if all(key in _SAFE_MESSAGE_KEYS for key in message):
        return message
    return {k: v for k, v in message.items() if k in _SAFE_MESSAGE_KEYS}


def _has_reasoning_value(message: dict[str, Any]) -> bool:
    return any(message.get(key) not in _EMPTY for key in (*_REASONING_KEYS, "reasoning_details"))


def _says_something(delta: dict[str, Any], role_pending: bool) -> bool:
    if role_pending and delta.get("role"):
        return True
    return any(key != "role" and value not in _EMPTY for key, value in delta.items())


class ChatShaper(ResponseShaper):
    """Shapes one chat completion (JSON) or one stream of chat completion chunks."""

    def __init__(self, policy: ReasoningPolicy) -> None:
        super().__init__(policy)
        self._role_sent: set[Any] = set()
        self._choices_with_reasoning: set[Any] = set()

    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        return openai_error(status, code, message)

    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        return [SSEEvent(data=dumps(openai_error(502, code, message)))]

    def _record_chat_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            tokens = nested_int(usage, "completion_tokens_details", "reasoning_tokens")
            self._record_usage(usage, tokens)

    def _note_reasoning(self, choice_index: Any, chars: int, has_value: bool) -> None:
        exposed = 0 if self.removes_reasoning else chars
        self._add_reasoning_chars(chars, exposed)
        if has_value and choice_index not in self._choices_with_reasoning:
            self._choices_with_reasoning.add(choice_index)
            if self.removes_reasoning:
                self.stats.removed_items += 1

    def shape_json(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        self._record_chat_usage(document.get("usage"))
        choices = document.get("choices")
        if not isinstance(choices, list):
            return document
        new_choices: list[Any] = []
        changed = False
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                self._note_reasoning(
                    choice.get("index"), _reasoning_chars(message), _has_reasoning_value(message)
                )
                if self.removes_reasoning:
                    stripped = _strip(message)
                    if stripped is not message:
                        choice = {**choice, "message": stripped}
                        changed = True
            new_choices.append(choice)
        return {**document, "choices": new_choices} if changed else document

    def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        if event.data.startswith("[DONE]"):
            return [event]
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return self._unknown(event)
        if not isinstance(chunk, dict):
            return self._unknown(event)
        usage = chunk.get("usage")
        self._record_chat_usage(usage)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            # An error object, a usage-only chunk without ``choices``, or something new: there is
            # no delta to strip, and errors and usage must reach the client.
            return [event]
        new_choices: list[Any] = []
        changed = False
        speaks = usage not in _EMPTY
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict):
                new_choices.append(choice)
                speaks = True
                continue
            index = choice.get("index")
            delta: dict[str, Any] = choice["delta"]
            self._note_reasoning(index, _reasoning_chars(delta), _has_reasoning_value(delta))
            if self.removes_reasoning:
                stripped = _strip(delta)
                if stripped is not delta:
                    changed = True
                    choice = {**choice, "delta": stripped}
                    if choice.get("logprobs") is not None and not _says_something(
                        stripped, role_pending=False
                    ):
                        # Log-probabilities of a reasoning-only delta describe reasoning tokens.
                        choice["logprobs"] = None
                delta = stripped
            if choice.get("finish_reason") is not None or _says_something(
                delta, role_pending=index not in self._role_sent
            ):
                speaks = True
                if delta.get("role"):
                    self._role_sent.add(index)
            new_choices.append(choice)
        if not changed:
            return [event]
        if not speaks:
            return []
        shaped = {**chunk, "choices": new_choices}
        return [SSEEvent(data=dumps(shaped), event=event.event, id=event.id, retry=event.retry)]

    def _unknown(self, event: SSEEvent) -> list[SSEEvent]:
        if not self.removes_reasoning:
            return [event]
        self.stats.removed_unknown += 1
        return []
