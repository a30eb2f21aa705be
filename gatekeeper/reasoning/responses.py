"""The Responses shaper: ``reasoning`` output items and the ``response.reasoning*`` events.

``drop`` removes a reasoning item: every stream event of that item goes, ``output_index`` of
later events is decremented, ``sequence_number`` is renumbered to stay contiguous, and the item
leaves the ``response`` snapshots, so the stream, the snapshots and the SDK's accumulated
response agree (dialects.md §2.4). The other modes keep the item and its ``id`` and rewrite its
text: ``truncate`` streams its summary / ``reasoning_text`` parts up to the budget (the part
that crosses it ends with the marker, later parts are left out); ``summary`` and ``redact``
hold the item's reasoning events back and, when the item is done, send one summary part with
the summary or the marker. ``encrypted_content`` never reaches the client in these modes: it is
kept for continuity with the original item, keyed by the item's id, by the id of the item that
follows it and by that item's ``call_id``.

Allow-lists decide what may stay when reasoning is shaped: output items of a type in
``SAFE_ITEM_TYPES``, content parts of a type in ``SAFE_PART_TYPES``, and events that either
belong to such an item (they carry its ``output_index``) or are in ``ITEMLESS_EVENTS``. Anything
else, including item types added to the API later (``compaction`` is one: opaque and possibly
derived from reasoning), is removed and counted in ``stats.removed_unknown``/``removed_items``.
"""

from __future__ import annotations

from typing import Any

import orjson

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning.responses_items import (
    ITEMLESS_EVENTS,
    PART_TYPES,
    SAFE_PART_TYPES,
    SNAPSHOT_EVENTS,
    SUMMARY_EVENTS,
    TERMINAL_EVENTS,
    USAGE_PATH,
    StreamItem,
    below,
    is_safe_item,
    item_texts,
    keep_keys,
    shape_message_item,
    shape_reasoning_item,
    skeleton,
    summary_part_events,
    with_part_text,
)
from gatekeeper.reasoning.shaper import ResponseShaper
from gatekeeper.reasoning.sse import SSEEvent
from gatekeeper.reasoning.trace import ShapingOptions, TraceEditor
from gatekeeper.wire import dumps, nested_int, openai_error


class ResponsesShaper(ResponseShaper):
    """Shapes one Responses object (JSON) or one Responses event stream."""

    def __init__(self, policy: ReasoningPolicy, options: ShapingOptions | None = None) -> None:
        super().__init__(policy, options)
        self._dropped_outputs: set[int] = set()
        self._dropped_ids: set[str] = set()
        self._dropped_parts: dict[int, set[int]] = {}
        self._next_sequence: int | None = None
        self._items: dict[int, StreamItem] = {}
        #: Each position's item as added (id, type, call_id), to find what follows a reasoning item.
        self._added: dict[int, dict[str, Any]] = {}
        #: Original reasoning items by position (continuity), and shaped ones by id (snapshots).
        self._originals: dict[int, tuple[dict[str, Any], bool]] = {}
        self._shaped: dict[str, dict[str, Any]] = {}
        self._kept_all = False

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

    def _usage_out(self, response: Any) -> Any:
        """Record the response's usage (billing truth); return the response as shown."""
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return response
        self._record_usage(usage, nested_int(usage, *USAGE_PATH))
        shown = self._exposed_usage(usage, USAGE_PATH)
        return response if shown is usage else {**response, "usage": shown}

    # -- whole responses ------------------------------------------------------------------

    async def shape_json(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        shaped = await self._shape_response(document, self.editor)
        self._keep_items(document.get("output"))
        return self._usage_out(shaped)

    async def _shape_response(self, response: Any, editor: TraceEditor | None) -> Any:
        """``response`` with its output shaped. ``editor`` is ``None`` for stream snapshots:
        their reasoning items were shaped (and counted) from the events already."""
        if not isinstance(response, dict) or not isinstance(response.get("output"), list):
            return response
        kept: list[Any] = []
        changed = False
        for position, item in enumerate(response["output"]):
            shaped = await self._shape_output_item(position, item, editor)
            changed = changed or shaped is not item
            if shaped is not None:
                kept.append(shaped)
        return {**response, "output": kept} if changed else response

    async def _shape_output_item(self, position: int, item: Any, editor: TraceEditor | None) -> Any:
        if is_safe_item(item):
            return shape_message_item(item) if self.removes_reasoning else item
        counting = editor is not None
        if not counting and not self.removes_reasoning:
            return item
        is_reasoning = isinstance(item, dict) and item.get("type") == "reasoning"
        if is_reasoning and counting:
            assert editor is not None
            trace = editor.block()
            shaped = await shape_reasoning_item(item, trace, editor)
            self._originals[position] = (item, trace.complete)
            self._sync_chars()
        elif is_reasoning and self.editor.mode != "drop":
            cached = self._shaped.get(str(item.get("id")))
            if cached is None:
                # Not seen in the stream (some servers change ids in the final snapshot):
                # shaped on its own, counted nowhere.
                scratch = TraceEditor(self.editor.mode, self.policy.max_tokens, self.options)
                cached = await shape_reasoning_item(item, scratch.block(), scratch)
            shaped = cached
        else:
            shaped = item
        if not self.removes_reasoning:
            return item
        if not is_reasoning or self.editor.mode == "drop":
            if counting:
                self.stats.removed_items += 1
            return None
        return shaped

    def _keep_items(self, output: Any) -> None:
        """Keep each original reasoning item under its id and its follower's ids (once)."""
        if self._kept_all or not isinstance(output, list):
            return
        self._kept_all = True
        for position, (item, complete) in sorted(self._originals.items()):
            follower = output[position + 1] if position + 1 < len(output) else None
            self._keep(keep_keys(item, follower), item, complete=complete)

    # -- streams --------------------------------------------------------------------------

    async def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        if event.data.startswith("[DONE]"):
            self._keep_stream()
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
        shaped = await self._shape_stream_document(document)
        if not self.removes_reasoning:
            return [event]
        out: list[SSEEvent] = []
        for position, doc in enumerate(shaped):
            sequence = doc.get("sequence_number")
            if isinstance(sequence, int) and not isinstance(sequence, bool):
                if self._next_sequence is None:
                    self._next_sequence = sequence
                if sequence != self._next_sequence:
                    doc = {**doc, "sequence_number": self._next_sequence}
                self._next_sequence += 1
            if doc is document:
                out.append(event)
            else:
                name = str(doc.get("type")) if event.event is not None else None
                retry = event.retry if position == 0 else None
                out.append(SSEEvent(data=dumps(doc), event=name, id=event.id, retry=retry))
        return out

    async def finish(self) -> list[SSEEvent]:
        self._keep_stream()
        return []

    def _keep_stream(self) -> None:
        if self._kept_all:
            return
        last = max(self._added, default=-1)
        self._keep_items([self._added.get(p) for p in range(last + 1)])

    async def _shape_stream_document(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        """The events to send in place of ``document``."""
        kind = document.get("type")
        if kind in SNAPSHOT_EVENTS:
            response = document.get("response")
            if kind in TERMINAL_EVENTS:
                response = self._usage_out(response)
            response = await self._shape_response(response, None)
            if kind in TERMINAL_EVENTS:
                self._keep_stream()
            if response is document.get("response"):
                return [document]
            return [{**document, "response": response}]
        position = document.get("output_index")
        if isinstance(position, int) and not isinstance(position, bool):
            return await self._shape_item_event(document, str(kind), position)
        if document.get("item_id") in self._dropped_ids:
            return []
        if kind in ITEMLESS_EVENTS:
            return [document]
        if self.removes_reasoning:
            self.stats.removed_unknown += 1
        return []

    def _at(self, document: dict[str, Any], position: int) -> dict[str, Any]:
        """``document`` with its ``output_index`` renumbered after removed items."""
        renumbered = position - below(self._dropped_outputs, position)
        return document if renumbered == position else {**document, "output_index": renumbered}

    async def _shape_item_event(
        self, document: dict[str, Any], kind: str, position: int
    ) -> list[dict[str, Any]]:
        item = document.get("item")
        if kind == "response.output_item.added":
            if isinstance(item, dict):
                self._added[position] = item
            if isinstance(item, dict) and item.get("type") == "reasoning":
                return self._reasoning_added(document, item, position)
            if not is_safe_item(item):
                self._dropped_outputs.add(position)
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    self._dropped_ids.add(item["id"])
                if self.removes_reasoning:
                    self.stats.removed_items += 1
        state = self._items.get(position)
        if state is not None:
            return await self._reasoning_event(document, kind, position, state)
        if position in self._dropped_outputs or "reasoning" in kind:
            # A reasoning event on an item that is not a reasoning item is never expected, and
            # never forwarded when reasoning is shaped.
            return []
        shaped = self._shape_part_event(document, kind, position)
        return [] if shaped is None else [self._at(shaped, position)]

    def _shape_part_event(
        self, document: dict[str, Any], kind: str, position: int
    ) -> dict[str, Any] | None:
        """A safe item's event without content parts that may carry reasoning (``None``:
        the event belongs to a removed part)."""
        if not self.removes_reasoning:
            return document
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
                renumbered = content_index - below(parts, content_index)
                if renumbered != content_index:
                    shaped = {**shaped, "content_index": renumbered}
        item = document.get("item")
        if isinstance(item, dict):
            new_item = shape_message_item(item)
            if new_item is not item:
                shaped = {**shaped, "item": new_item}
        return shaped

    def _reasoning_added(
        self, document: dict[str, Any], item: dict[str, Any], position: int
    ) -> list[dict[str, Any]]:
        self._items[position] = StreamItem(
            str(item.get("id", "")), self.editor.block(), "content" in item
        )
        if self.editor.mode == "drop":
            self._dropped_outputs.add(position)
            if isinstance(item.get("id"), str):
                self._dropped_ids.add(item["id"])
            self.stats.removed_items += 1
            return []
        if self.editor.mode == "full":
            return [document]
        keep_content = self.editor.mode == "truncate" and "content" in item
        return [self._at({**document, "item": skeleton(item, keep_content)}, position)]

    async def _reasoning_event(
        self, document: dict[str, Any], kind: str, position: int, state: StreamItem
    ) -> list[dict[str, Any]]:
        mode = self.editor.mode
        if kind == "response.output_item.done":
            return await self._reasoning_done(document, position, state)
        route = SUMMARY_EVENTS.get(kind)
        if route is None:
            return [document] if mode == "full" else []
        field_name, step = route
        index = document.get("summary_index" if field_name == "summary" else "content_index")
        if not isinstance(index, int):
            return [document] if mode == "full" else []
        key = (field_name, index)
        trace = state.trace
        if step == "added":
            if mode == "summary" and trace.text:
                trace.keep("\n")  # so the summariser sees where one part ended
            if self.editor.spent:
                state.skipped.add(key)
            else:
                state.parts.setdefault(key, "")
        shown = ""
        if step == "delta" or (step == "text_done" and key not in state.with_deltas):
            text = document.get("delta" if step == "delta" else "text")
            text = text if isinstance(text, str) else ""
            if step == "delta":
                state.with_deltas.add(key)
            state.fed = state.fed or bool(text)
            if mode == "full" or (mode == "truncate" and key not in state.skipped):
                shown = trace.feed(text)
                state.parts[key] = state.parts.get(key, "") + shown
            else:
                trace.keep(text)
            self._sync_chars()
        if mode == "full":
            return [document]
        if mode != "truncate" or key in state.skipped:
            return []
        if step == "delta":
            return [self._at({**document, "delta": shown}, position)] if shown else []
        return [self._at(with_part_text(document, step, state.parts.get(key, "")), position)]

    async def _reasoning_done(
        self, document: dict[str, Any], position: int, state: StreamItem
    ) -> list[dict[str, Any]]:
        item = document.get("item")
        original = item if isinstance(item, dict) else {}
        mode = self.editor.mode
        if not state.fed:
            # No text arrived as deltas: the finished item carries it.
            for field_name, index, text in item_texts(original):
                if mode == "summary" and state.trace.text:
                    state.trace.keep("\n")
                key = (field_name, index)
                if mode == "truncate" and not self.editor.spent:
                    state.parts[key] = state.trace.feed(text)
                elif mode == "full":
                    state.trace.feed(text)
                else:
                    state.trace.keep(text)
                    state.skipped.add(key)
        self._originals[position] = (original, state.trace.complete)
        del self._items[position]
        if mode == "full":
            self._sync_chars()
            return [document]
        if mode == "drop":
            self._sync_chars()
            return []
        shown = await state.trace.close()
        self._sync_chars()
        shaped = skeleton(original, keep_content=mode == "truncate" and state.had_content)
        events: list[dict[str, Any]] = []
        if mode == "truncate":
            for field_name, part_type in PART_TYPES:
                texts = sorted((i, t) for (f, i), t in state.parts.items() if f == field_name)
                if field_name == "summary" or state.had_content:
                    shaped[field_name] = [{"type": part_type, "text": t} for _, t in texts]
        elif shown:
            part = {"type": "summary_text", "text": shown}
            shaped["summary"] = [part]
            events = summary_part_events(document, state.id, part)
        self._shaped[state.id] = shaped
        events.append({**document, "item": shaped})
        return [self._at(doc, position) for doc in events]
