"""Helpers for shaper tests: build SSE events from documents and run them through a shaper."""

from __future__ import annotations

from typing import Any

import orjson

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.dialects import ResponseShaper
from gatekeeper.shaping import SSEEvent, encode_event


def shaper(dialect: Any, mode: str = "drop") -> ResponseShaper:
    return dialect.new_shaper(ReasoningPolicy.model_validate({"mode": mode}))  # type: ignore[no-any-return]


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
        for shaped in s.shape_event(event(document, name)):
            if named:
                assert shaped.event == orjson.loads(shaped.data)["type"]
            out.append(shaped.data if shaped.data == "[DONE]" else orjson.loads(shaped.data))
    return out
