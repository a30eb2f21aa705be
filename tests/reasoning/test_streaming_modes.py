"""Streaming stays streaming in every mode: nothing but reasoning is held back, a model-backed
summariser that takes its time works, and what continuity keeps is stored before the end of the
response goes out."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning import Responder, ShapingOptions
from tests.reasoning.recorded import (
    ANTHROPIC_JSON,
    STREAMS,
    Collector,
    Recording,
    events,
    ids,
    respond,
)

MODES = ["full", "summary", "truncate", "redact", "drop"]


class SlowModel:
    """A stand-in for a model-backed summariser: it awaits I/O before answering."""

    def __init__(self) -> None:
        self.calls = 0

    async def summarise(self, text: str, max_tokens: int) -> str:
        self.calls += 1
        await asyncio.sleep(0.01)
        return f"A summary of {len(text)} characters."


class ReasoningEvents:
    """Tells which upstream events belong to reasoning (and may be held back or removed)."""

    def __init__(self, recording: Recording) -> None:
        self.dialect = recording.dialect.name
        self.blocks: set[int] = set()

    def __call__(self, data: str) -> bool:
        if data.startswith("[DONE]"):
            return False
        document = orjson.loads(data)
        if self.dialect == "openai_chat":
            choices = document.get("choices") or []
            said = any(
                (c.get("delta") or {}).get(k) not in (None, "", [])
                for c in choices
                for k in ("content", "tool_calls", "refusal")
            )
            finished = any(c.get("finish_reason") for c in choices)
            return not (said or finished or document.get("usage"))
        kind = document.get("type", "")
        position = document.get("index", document.get("output_index"))
        block = document.get("content_block") or document.get("item") or {}
        if kind in ("content_block_start", "response.output_item.added") and block.get("type") in (
            "thinking",
            "redacted_thinking",
            "reasoning",
        ):
            self.blocks.add(position)
        return position in self.blocks or "reasoning" in kind


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("recording", STREAMS, ids=ids(STREAMS))
async def test_every_other_event_goes_out_as_soon_as_it_is_complete(
    recording: Recording, mode: str
) -> None:
    """Time to first byte grows by at most one event: each event that carries no reasoning is
    sent during the very call that completed it."""
    sink = Collector()
    responder = Responder(sink, shaper=recording.shaper(mode), extra_headers=[])
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    upstream = [e for e in events(recording.body) if e.raw]
    is_reasoning = ReasoningEvents(recording)
    for position, event in enumerate(upstream):
        before = len(sink.messages)
        assert event.raw is not None
        await responder(
            {
                "type": "http.response.body",
                "body": event.raw,
                "more_body": position < len(upstream) - 1,
            }
        )
        if not is_reasoning(event.data):
            assert len(sink.messages) > before, f"event {position} was held back: {event.data}"


@pytest.mark.parametrize("recording", STREAMS, ids=ids(STREAMS))
async def test_a_summariser_that_awaits_a_model_works_in_streams(recording: Recording) -> None:
    model = SlowModel()
    shaper = recording.dialect.new_shaper(
        ReasoningPolicy(mode="summary"), ShapingOptions(summariser=model)
    )
    _, sink = await respond([recording.body], shaper=shaper, content_type=b"text/event-stream")
    if shaper.stats.seen_chars:
        assert model.calls >= 1
        assert b"[summary] A summary of" in sink.body


async def test_kept_reasoning_is_stored_before_the_last_bytes_go_out() -> None:
    order: list[str] = []
    sink = Collector()

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            order.append("last body bytes")
        await sink(message)

    async def before_end() -> None:
        order.append("kept")

    shaper = ANTHROPIC_JSON.dialect.new_shaper(
        ReasoningPolicy(mode="drop"), ShapingOptions(keep=True)
    )
    responder = Responder(send, shaper=shaper, extra_headers=[], before_end=before_end)
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await responder({"type": "http.response.body", "body": ANTHROPIC_JSON.body})
    assert order == ["kept", "last body bytes"]


async def test_an_aborted_response_keeps_nothing() -> None:
    called: list[bool] = []

    async def before_end() -> None:
        called.append(True)

    responder = Responder(
        Collector(),
        shaper=ANTHROPIC_JSON.shaper(),
        extra_headers=[],
        max_json_bytes=10,
        before_end=before_end,
    )
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await responder({"type": "http.response.body", "body": ANTHROPIC_JSON.body})
    assert responder.aborted and called == []


async def test_a_failing_hook_does_not_fail_the_response() -> None:
    async def before_end() -> None:
        raise RuntimeError("vault bug")

    sink = Collector()
    responder = Responder(
        sink, shaper=ANTHROPIC_JSON.shaper(), extra_headers=[], before_end=before_end
    )
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await responder({"type": "http.response.body", "body": ANTHROPIC_JSON.body})
    assert sink.start["status"] == 200 and orjson.loads(sink.body)["content"]
