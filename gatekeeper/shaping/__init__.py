"""Response shaping: the ``Responder`` send-wrapper, SSE framing that survives any chunk
boundary, the summarisers of ``summary`` mode and the continuity vault. What to change in a
response is decided per dialect (``gatekeeper.dialects``); see docs/reasoning.md."""

from __future__ import annotations

from gatekeeper.shaping.continuity import (
    Continuity,
    MemoryVault,
    ReasoningVault,
    RedisVault,
    open_vault,
)
from gatekeeper.shaping.responder import DEFAULT_MAX_JSON_BYTES, Responder
from gatekeeper.shaping.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    SSEDecoder,
    SSEEvent,
    SSEEventTooLarge,
    encode_event,
)
from gatekeeper.shaping.summarize import (
    SUMMARY_PREFIX,
    ExtractiveSummariser,
    Summariser,
    load_summariser,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_JSON_BYTES",
    "SUMMARY_PREFIX",
    "Continuity",
    "ExtractiveSummariser",
    "MemoryVault",
    "ReasoningVault",
    "RedisVault",
    "Responder",
    "SSEDecoder",
    "SSEEvent",
    "SSEEventTooLarge",
    "Summariser",
    "encode_event",
    "load_summariser",
    "open_vault",
]
