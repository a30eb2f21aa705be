"""Helpers shared by the demo-reasoner tests."""

from __future__ import annotations

from typing import Any

import orjson


def words(text: str | None) -> int:
    """The demo tokenizer, restated independently of the package: whitespace-separated words."""
    return len((text or "").split())


def parse_sse(body: bytes) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) per event of a complete SSE body; ``[DONE]`` stays a string."""
    events: list[tuple[str | None, Any]] = []
    assert body.endswith(b"\n\n"), "the stream must end with a complete event"
    for frame in body.decode().split("\n\n")[:-1]:
        name, data = None, []
        for line in frame.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        text = "\n".join(data)
        events.append((name, text if text == "[DONE]" else orjson.loads(text)))
    return events
