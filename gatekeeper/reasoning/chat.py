"""The Chat Completions shaper: reasoning keys on ``message`` and on stream ``delta``.

Each choice's reasoning is one block. A message/delta keeps only keys known to carry no
reasoning (``SAFE_MESSAGE_KEYS``); what the mode lets through is written back under the
reasoning keys the server used (``reasoning_content``, ``reasoning``, ``thinking``, and
OpenRouter's ``reasoning_details`` as one ``reasoning.text`` entry), so clients find it where
they look. A stream chunk left with nothing to say is dropped; chunks with a ``finish_reason``,
with ``usage`` or with the first ``role`` of a choice are kept.

In ``summary`` mode a choice's summary goes out as one extra chunk, right before the first chunk
of that choice that carries something else (content, tool calls, a finish reason), or before
the usage chunk / ``[DONE]`` / the end of the stream. For continuity, the reasoning of a choice
that calls tools is kept under its tool call ids (DeepSeek wants it back on those turns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning.shaper import ResponseShaper
from gatekeeper.reasoning.sse import SSEEvent
from gatekeeper.reasoning.trace import ShapingOptions, TraceBlock
from gatekeeper.wire import dumps, nested_int, openai_error

#: Keys of a message or delta that never carry reasoning. Everything else is removed in the
#: modes that change reasoning (an allow-list: a new vendor reasoning key cannot leak).
SAFE_MESSAGE_KEYS = frozenset(
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
#: Keys known to hold reasoning text, most specific first.
TEXT_KEYS = ("reasoning_content", "reasoning", "thinking")
DETAILS_KEY = "reasoning_details"
USAGE_PATH = ("completion_tokens_details", "reasoning_tokens")
_EMPTY: tuple[Any, ...] = (None, "", [], {})


def reasoning_text(message: dict[str, Any]) -> str:
    """The reasoning text of a message/delta. Servers repeat it under several keys, so the
    first text key that has some wins, else the text of the ``reasoning_details`` entries."""
    for key in TEXT_KEYS:
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    details = message.get(DETAILS_KEY)
    if not isinstance(details, list):
        return ""
    return "".join(
        d[k]
        for d in details
        if isinstance(d, dict)
        for k in ("text", "summary")
        if isinstance(d.get(k), str)
    )


def has_reasoning(message: dict[str, Any]) -> bool:
    return any(message.get(key) not in _EMPTY for key in (*TEXT_KEYS, DETAILS_KEY))


def _safe(message: dict[str, Any]) -> dict[str, Any]:
    """The message/delta without any key outside the allow-list (the same object if none)."""
    if all(key in SAFE_MESSAGE_KEYS for key in message):
        return message
    return {k: v for k, v in message.items() if k in SAFE_MESSAGE_KEYS}


def _says_something(delta: dict[str, Any], role_pending: bool) -> bool:
    if role_pending and delta.get("role"):
        return True
    return any(key != "role" and value not in _EMPTY for key, value in delta.items())


def _detail_entry(text: str, like: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "reasoning.text", "text": text}
    for key in ("format", "index"):
        if key in like:
            entry[key] = like[key]
    return entry


@dataclass
class _Choice:
    """What the shaper remembers about one choice of a stream."""

    block: TraceBlock | None = None
    text_keys: list[str] = field(default_factory=list)
    details_like: dict[str, Any] | None = None
    details: list[Any] = field(default_factory=list)
    tool_call_ids: list[str] = field(default_factory=list)
    role_sent: bool = False
    had_reasoning: bool = False
    #: The block's summary went out; reasoning after that starts a new block.
    closed: bool = False


class ChatShaper(ResponseShaper):
    """Shapes one chat completion (JSON) or one stream of chat completion chunks."""

    def __init__(self, policy: ReasoningPolicy, options: ShapingOptions | None = None) -> None:
        super().__init__(policy, options)
        self._choices: dict[Any, _Choice] = {}
        self._last_chunk: dict[str, Any] = {}

    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        return openai_error(status, code, message)

    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        return [SSEEvent(data=dumps(openai_error(502, code, message)))]

    def _usage(self, usage: Any) -> Any:
        """Record a usage object (billing truth) and return it as the client should see it."""
        if not isinstance(usage, dict):
            return usage
        self._record_usage(usage, nested_int(usage, *USAGE_PATH))
        return self._exposed_usage(usage, USAGE_PATH)

    def _rewrite(
        self, message: dict[str, Any], shown: str, keys: list[str], safe: dict[str, Any]
    ) -> dict[str, Any]:
        """The message/delta with only safe keys (``safe``), and ``shown`` under its reasoning
        keys. The message itself when that changes nothing (truncate before its cut)."""
        if not shown:
            return safe
        out = dict(safe)
        for key in keys:
            if isinstance(message.get(key), str):
                out[key] = shown
        details = message.get(DETAILS_KEY)
        if isinstance(details, list) and details:
            like = next((d for d in details if isinstance(d, dict)), {})
            out[DETAILS_KEY] = [_detail_entry(shown, like)]
        if len(out) == len(safe):  # no key to put it under: use the usual one
            out["reasoning_content"] = shown
        return message if out == message else out

    # -- whole completions ----------------------------------------------------------------

    async def shape_json(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        choices = document.get("choices")
        changed = False
        new_choices: list[Any] = []
        for choice in choices if isinstance(choices, list) else []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                shaped = await self._shape_message(message)
                if shaped is not message:
                    choice = {**choice, "message": shaped}
                    changed = True
            new_choices.append(choice)
        # After the messages: the usage tells the client how much reasoning it was shown.
        usage = self._usage(document.get("usage"))
        if not changed and usage is document.get("usage"):
            return document
        shaped_document = dict(document)
        if changed:
            shaped_document["choices"] = new_choices
        if "usage" in document:
            shaped_document["usage"] = usage
        return shaped_document

    async def _shape_message(self, message: dict[str, Any]) -> dict[str, Any]:
        if not has_reasoning(message):
            # No reasoning block to shape: a stream opens none for such a message either, and a
            # block opened here would make `redact` add its marker to an answer without any.
            # The allow-list still applies: an unknown key may carry reasoning.
            return _safe(message) if self.removes_reasoning else message
        text = reasoning_text(message)
        block = self.editor.block()
        shown = await block.whole(text)
        self._sync_chars()
        if not self.removes_reasoning:
            return message
        if has_reasoning(message):
            if not shown:
                self.stats.removed_items += 1
            calls = message.get("tool_calls")
            ids = [c["id"] for c in calls or [] if isinstance(c, dict) and "id" in c]
            value = {k: message[k] for k in (*TEXT_KEYS, DETAILS_KEY) if k in message}
            self._keep([f"openai_chat:tc:{i}" for i in ids], value, complete=block.complete)
        return self._rewrite(message, shown, list(TEXT_KEYS), _safe(message))

    # -- streams --------------------------------------------------------------------------

    async def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        if event.data.startswith("[DONE]"):
            return [*await self._flush_all(), event]
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return self._unknown(event)
        if not isinstance(chunk, dict):
            return self._unknown(event)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            # An error object, a usage-only chunk without ``choices``, or something new: there is
            # no delta to strip, and errors and usage must reach the client.
            flushed = await self._flush_all() if "usage" in chunk else []
            return [*flushed, *self._with_usage(event, chunk, chunk)]
        self._last_chunk = chunk
        before: list[SSEEvent] = []
        if not choices and chunk.get("usage") is not None:
            before = await self._flush_all()
        new_choices: list[Any] = []
        changed = False
        speaks = chunk.get("usage") not in _EMPTY
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict):
                new_choices.append(choice)
                speaks = True
                continue
            shaped, says = await self._shape_choice(choice, before)
            changed = changed or shaped is not choice
            speaks = speaks or says
            new_choices.append(shaped)
        if not changed:
            return [*before, *self._with_usage(event, chunk, chunk)]
        if not speaks:
            return before
        shaped_chunk = {**chunk, "choices": new_choices}
        return [*before, *self._with_usage(event, chunk, shaped_chunk)]

    def _with_usage(
        self, event: SSEEvent, chunk: dict[str, Any], shaped: dict[str, Any]
    ) -> list[SSEEvent]:
        original = chunk.get("usage")
        if isinstance(original, dict):
            usage = self._usage(original)
            if usage is not original:
                shaped = {**shaped, "usage": usage}
        if shaped is chunk:
            return [event]
        return [SSEEvent(data=dumps(shaped), event=event.event, id=event.id, retry=event.retry)]

    async def _shape_choice(
        self, choice: dict[str, Any], before: list[SSEEvent]
    ) -> tuple[dict[str, Any], bool]:
        index = choice.get("index")
        state = self._choices.setdefault(index, _Choice())
        delta: dict[str, Any] = choice["delta"]
        if "tool_calls" in delta:
            for call in delta["tool_calls"] or []:
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    state.tool_call_ids.append(call["id"])
        others = _safe(delta)
        # Reasoning keys are outside the allow-list: any key outside it is (or may be) reasoning.
        reasoning = others is not delta
        stripped, shaped = delta, choice
        if reasoning:
            text = reasoning_text(delta)
            self._note_keys(state, delta)
            if state.block is None or (state.closed and text):
                state.block, state.closed = self.editor.block(), False
            shown = state.block.feed(text)
            self._sync_chars()
            if self.removes_reasoning:
                stripped = self._rewrite(delta, shown, state.text_keys, others)
            if stripped is not delta:
                shaped = {**choice, "delta": stripped}
                if choice.get("logprobs") is not None and not _says_something(stripped, False):
                    # Log-probabilities of a reasoning-only delta describe reasoning tokens.
                    shaped["logprobs"] = None
        if choice.get("finish_reason") is not None or _says_something(others, False):
            # The reasoning of this choice is over: its summary goes out before this chunk.
            before.extend(await self._flush(index, state))
            if choice.get("finish_reason") is not None:
                self._keep_choice(state)
        says = choice.get("finish_reason") is not None or _says_something(
            stripped, role_pending=not state.role_sent
        )
        if says and stripped.get("role"):
            state.role_sent = True
        return shaped, says

    def _note_keys(self, state: _Choice, delta: dict[str, Any]) -> None:
        if has_reasoning(delta) and not state.had_reasoning:
            state.had_reasoning = True
            if self.editor.mode == "drop":
                self.stats.removed_items += 1
        for key in TEXT_KEYS:
            if isinstance(delta.get(key), str) and key not in state.text_keys:
                state.text_keys.append(key)
        details = delta.get(DETAILS_KEY)
        if isinstance(details, list) and details:
            if state.details_like is None:
                state.details_like = next((d for d in details if isinstance(d, dict)), {})
            if self.editor.buffers:
                state.details.extend(details)

    async def _flush(self, index: Any, state: _Choice) -> list[SSEEvent]:
        """The summary chunk of a choice whose reasoning just ended (summary mode only)."""
        block = state.block
        if block is None or state.closed or self.editor.mode != "summary":
            return []
        state.closed = True
        shown = await block.close()
        self._sync_chars()
        if not shown:
            return []
        delta: dict[str, Any] = {key: shown for key in state.text_keys}
        if state.details_like is not None:
            delta[DETAILS_KEY] = [_detail_entry(shown, state.details_like)]
        if not delta:
            delta["reasoning_content"] = shown
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        # The envelope (id, model, …) of the chunk that ended the reasoning; usage (null) last,
        # as upstream sends it.
        chunk = {k: v for k, v in self._last_chunk.items() if k not in ("choices", "usage")}
        chunk["choices"] = [choice]
        if "usage" in self._last_chunk:
            chunk["usage"] = None
        return [SSEEvent(data=dumps(chunk))]

    async def _flush_all(self) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for index, state in self._choices.items():
            out.extend(await self._flush(index, state))
            self._keep_choice(state)
        return out

    def _keep_choice(self, state: _Choice) -> None:
        block = state.block
        if block is None or not state.tool_call_ids or not state.had_reasoning:
            return
        value: dict[str, Any] = {key: block.text for key in state.text_keys}
        if state.details:
            value[DETAILS_KEY] = state.details
        ids, state.tool_call_ids = state.tool_call_ids, []
        self._keep([f"openai_chat:tc:{i}" for i in ids], value, complete=block.complete)

    async def finish(self) -> list[SSEEvent]:
        return await self._flush_all()

    def _unknown(self, event: SSEEvent) -> list[SSEEvent]:
        if not self.removes_reasoning:
            return [event]
        self.stats.removed_unknown += 1
        return []
