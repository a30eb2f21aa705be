"""Helpers for shaper tests: build SSE events from documents and run them through a shaper."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import orjson

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning import ResponseShaper, ShapingOptions, SSEEvent, encode_event

T = TypeVar("T")


def now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that must not suspend (shaping with the extractive
    summariser never does), without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the coroutine suspended")


def shaper(
    dialect: Any, mode: str = "drop", max_tokens: int | None = None, *, keep: bool = False
) -> ResponseShaper:
    """A shaper of ``dialect``; ``keep`` collects what continuity would keep (``.kept``)."""
    policy = ReasoningPolicy.model_validate({"mode": mode, "max_tokens": max_tokens})
    return dialect.new_shaper(policy, ShapingOptions(keep=keep))  # type: ignore[no-any-return]


def event(document: Any, name: str | None = None) -> SSEEvent:
    data = document if isinstance(document, str) else orjson.dumps(document).decode()
    ev = SSEEvent(data=data, event=name)
    ev.raw = encode_event(ev)
    return ev


def run(s: ResponseShaper, documents: list[Any], named: bool = False) -> list[Any]:
    """Shape a stream of documents; return the documents sent (``[DONE]`` as a string)."""
    out: list[Any] = []
    for document in documents:
        name = document.get("type") if named and isinstance(document, dict) else None
        for shaped in now(s.shape_event(event(document, name))):
            if named:
                assert shaped.event == orjson.loads(shaped.data)["type"]
            out.append(shaped.data if shaped.data == "[DONE]" else orjson.loads(shaped.data))
    return out
