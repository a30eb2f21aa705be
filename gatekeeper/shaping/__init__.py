"""Response shaping: the ``Responder`` send-wrapper and SSE framing that survives any chunk
boundary. What to change in a response is decided per dialect (``gatekeeper.dialects``)."""

from __future__ import annotations

from gatekeeper.shaping.responder import DEFAULT_MAX_JSON_BYTES, Responder
from gatekeeper.shaping.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    SSEDecoder,
    SSEEvent,
    SSEEventTooLarge,
    encode_event,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_JSON_BYTES",
    "Responder",
    "SSEDecoder",
    "SSEEvent",
    "SSEEventTooLarge",
    "encode_event",
]
