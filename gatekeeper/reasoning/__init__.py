"""Reasoning shaping: the ``ResponseShaper`` base and the per-dialect shapers (``chat``,
``responses``, ``messages``), the trace editor, the ``Responder`` send-wrapper, SSE framing that
survives any chunk boundary, the summarisers of ``summary`` mode, the continuity vault and the
per-request enforcement (budget, continuity, shaper). See docs/reasoning.md.

Only the dialect-independent names are exported here; the per-dialect shapers and
``enforcement`` are imported from their modules."""

from __future__ import annotations

from gatekeeper.reasoning.continuity import (
    Continuity,
    MemoryVault,
    ReasoningVault,
    RedisVault,
    open_vault,
)
from gatekeeper.reasoning.responder import DEFAULT_MAX_JSON_BYTES, Responder
from gatekeeper.reasoning.shaper import (
    KeptReasoning,
    ReasoningStats,
    ResponseShaper,
    estimate_tokens,
)
from gatekeeper.reasoning.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    SSEDecoder,
    SSEEvent,
    SSEEventTooLarge,
    encode_event,
)
from gatekeeper.reasoning.summarize import (
    SUMMARY_PREFIX,
    ExtractiveSummariser,
    Summariser,
    load_summariser,
)
from gatekeeper.reasoning.trace import ShapingOptions

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_JSON_BYTES",
    "SUMMARY_PREFIX",
    "Continuity",
    "ExtractiveSummariser",
    "KeptReasoning",
    "MemoryVault",
    "ReasoningStats",
    "ReasoningVault",
    "RedisVault",
    "Responder",
    "ResponseShaper",
    "SSEDecoder",
    "SSEEvent",
    "SSEEventTooLarge",
    "ShapingOptions",
    "Summariser",
    "encode_event",
    "estimate_tokens",
    "load_summariser",
    "open_vault",
]
