"""What every API dialect provides: reading a request, writing errors, shaping responses.

A dialect is one wire format (OpenAI chat completions, OpenAI responses, Anthropic messages).
The middleware picks the dialect by request path, asks it for the request facts the policy needs,
formats refusals in the dialect's own error shape (so official SDKs raise their usual
exceptions), and gets from it a per-response ``ResponseShaper`` that enforces the decision's
reasoning policy on JSON bodies and on SSE events.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gatekeeper.contract import PromptFeatures, ReasoningPolicy
from gatekeeper.shaping.sse import SSEEvent


class RequestBodyError(ValueError):
    """The request body does not have the shape the dialect requires (maps to HTTP 400)."""


@dataclass(slots=True)
class RequestFacts:
    """What the dialect read from a request body."""

    model: str | None = None
    stream: bool = False
    reasoning_requested: bool = False
    max_tokens: int | None = None
    estimated_tokens: int = 0
    prompt_features: PromptFeatures = field(default_factory=PromptFeatures)


@dataclass(slots=True)
class ReasoningStats:
    """What shaping saw and did, for the decision log and the quota stage.

    Token counts: ``seen_tokens`` is the provider's own reasoning count from the response usage
    (``reasoning_tokens`` / ``thinking_tokens``) when the response reports one, otherwise the
    ``estimate_tokens`` estimate of the reasoning text seen (``seen_chars``); opaque payloads
    (signatures, encrypted or redacted reasoning) count as items, not as text.
    ``exposed_tokens`` is the share of ``seen_tokens`` that reached the client (in proportion to
    the characters exposed), ``removed_tokens`` the rest.
    ``usage`` is the response's final usage object exactly as the provider sent it.
    """

    mode: str = "full"
    seen_tokens: int = 0
    exposed_tokens: int = 0
    removed_tokens: int = 0
    removed_items: int = 0
    usage: dict[str, Any] | None = None
    #: The mode actually enforced (modes not implemented yet are enforced as ``drop``).
    applied_mode: str = "full"
    seen_chars: int = 0
    exposed_chars: int = 0
    #: Reasoning tokens reported in ``usage``, when the provider reports them.
    usage_reasoning_tokens: int | None = None
    #: Upstream events removed because their type is not known to be free of reasoning.
    removed_unknown: int = 0

    def refresh(self) -> None:
        """Recompute the token fields from the character counts and the usage."""
        if self.usage_reasoning_tokens is not None:
            seen = self.usage_reasoning_tokens
        else:
            seen = estimate_tokens(self.seen_chars)
        if self.seen_chars:
            # The exposed share of the text, applied to the (possibly provider-counted) total.
            exposed = seen * min(self.exposed_chars, self.seen_chars) // self.seen_chars
        else:
            exposed = 0
        self.seen_tokens = seen
        self.exposed_tokens = exposed
        self.removed_tokens = seen - exposed


def applied_mode(mode: str) -> str:
    """The mode a shaper enforces for a requested ``mode``.

    ``summary``, ``truncate`` and ``redact`` are not implemented yet; they are enforced as
    ``drop`` so that asking for them can never expose more than ``drop`` does.
    """
    return "full" if mode == "full" else "drop"


class ResponseShaper(ABC):
    """Enforces one reasoning policy on one response. Stateful across a stream's events."""

    def __init__(self, policy: ReasoningPolicy) -> None:
        self.policy = policy
        self.stats = ReasoningStats(mode=policy.mode, applied_mode=applied_mode(policy.mode))
        #: False only in ``full`` mode: the shaper then observes (stats, usage), changes nothing.
        self.removes_reasoning = self.stats.applied_mode != "full"

    @abstractmethod
    def shape_json(self, document: Any) -> Any:
        """Return the shaped form of a whole (non-streamed) JSON response body.

        Returns ``document`` itself (the same object, never mutated) when nothing changed, so
        the caller can forward the original bytes.
        """

    @abstractmethod
    def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        """Return the events to send in place of one upstream SSE event (possibly none).

        An unchanged event is returned as the same object (its ``raw`` bytes are forwarded);
        changed or new events have ``raw = None`` and are re-encoded.
        """

    def finish(self) -> list[SSEEvent]:
        """Events to append when the upstream stream ends (none by default)."""
        return []

    @abstractmethod
    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        """The dialect's error body, used when a JSON response must be replaced by an error."""

    @abstractmethod
    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        """The dialect's mid-stream error frame(s), sent before a stream is cut short."""

    def _add_reasoning_chars(self, seen: int, exposed: int = 0) -> None:
        if seen or exposed:
            self.stats.seen_chars += seen
            self.stats.exposed_chars += exposed
            self.stats.refresh()

    def _record_usage(self, usage: dict[str, Any], reasoning_tokens: int | None) -> None:
        self.stats.usage = usage
        if reasoning_tokens is not None:
            self.stats.usage_reasoning_tokens = reasoning_tokens
        self.stats.refresh()


class Dialect(ABC):
    """One API wire format."""

    name: ClassVar[str]
    paths: ClassVar[tuple[str, ...]]
    #: Output tokens assumed by ``estimated_tokens`` when the request sets no maximum.
    default_output_tokens: ClassVar[int] = 4096

    @abstractmethod
    def read_request(self, body: Any) -> RequestFacts:
        """Read the policy-relevant facts from a parsed JSON request body.

        Raises ``RequestBodyError`` when the body is not an object of the expected shape.
        """

    @abstractmethod
    def error_body(
        self, status: int, code: str, message: str, *, request_id: str | None = None
    ) -> dict[str, Any]:
        """The dialect's own error document for a refusal.

        ``code`` is gatekeeper's reason code; every dialect puts it where a client can read it
        without breaking the official SDKs' error parsing.
        """

    @abstractmethod
    def new_shaper(self, policy: ReasoningPolicy) -> ResponseShaper:
        """A shaper that enforces ``policy`` on one response of this dialect."""


def estimate_tokens(chars: int) -> int:
    """A cheap, deterministic token estimate: about four characters per token."""
    return (chars + 3) // 4
