"""The shaper every dialect hands out: ``ResponseShaper`` enforces one reasoning policy on one
response; ``ReasoningStats`` is what it saw and did, ``KeptReasoning`` what it kept for
continuity. The per-dialect shapers are ``chat``, ``responses`` and ``messages``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning.sse import SSEEvent
from gatekeeper.reasoning.trace import ShapingOptions, TraceEditor


@dataclass(slots=True)
class ReasoningStats:
    """What shaping saw and did, for the decision log and the quota stage.

    Token counts: ``seen_tokens`` is the provider's own reasoning count from the response usage
    (``reasoning_tokens`` / ``thinking_tokens``) when the response reports one, otherwise the
    ``estimate_tokens`` estimate of the reasoning text seen (``seen_chars``); opaque payloads
    (signatures, encrypted or redacted reasoning) count as items, not as text.
    ``exposed_tokens`` is the share of ``seen_tokens`` that reached the client (in proportion to
    the characters of the trace exposed: the passed part in ``truncate``, the summary's text in
    ``summary``, none in ``redact`` and ``drop``; markers are not reasoning),
    ``removed_tokens`` the rest.
    ``usage`` is the response's final usage object exactly as the provider sent it (billing
    truth, whatever the client was shown).
    """

    mode: str = "full"
    seen_tokens: int = 0
    exposed_tokens: int = 0
    removed_tokens: int = 0
    #: Reasoning blocks/items removed whole (``drop``, and unknown types in every mode but
    #: ``full``); rewritten ones (summary, truncate, redact) are not counted here.
    removed_items: int = 0
    usage: dict[str, Any] | None = None
    #: The mode actually enforced (``drop`` when a reasoning budget was spent).
    applied_mode: str = "full"
    seen_chars: int = 0
    exposed_chars: int = 0
    #: Reasoning tokens reported in ``usage``, when the provider reports them.
    usage_reasoning_tokens: int | None = None
    #: Upstream events removed because their type is not known to be free of reasoning.
    removed_unknown: int = 0
    #: Reasoning blocks kept for continuity, and blocks that could not be (over the buffer).
    kept_items: int = 0
    unkept_items: int = 0

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


@dataclass(frozen=True, slots=True)
class KeptReasoning:
    """Reasoning a response did not show as sent, kept so a later request can carry it again.

    ``keys`` name it the way a later request's history will refer to it (item ids, tool call
    ids, placeholder handles; each prefixed by the dialect), ``value`` is what the dialect's
    ``restore_history`` needs (JSON-serialisable).
    """

    keys: tuple[str, ...]
    value: Any


class ResponseShaper(ABC):
    """Enforces one reasoning policy on one response. Stateful across a stream's events.

    The shaping methods are coroutines because ``summary`` mode awaits a summariser, which may
    call a model; in every other mode they never suspend.
    """

    def __init__(self, policy: ReasoningPolicy, options: ShapingOptions | None = None) -> None:
        self.policy = policy
        self.options = options or ShapingOptions()
        self.stats = ReasoningStats(mode=policy.mode, applied_mode=policy.mode)
        #: False only in ``full`` mode: the shaper then observes (stats, usage), changes nothing.
        self.removes_reasoning = policy.mode != "full"
        self.editor = TraceEditor(policy.mode, policy.max_tokens, self.options)
        #: What continuity should keep from this response (filled as the response goes).
        self.kept: list[KeptReasoning] = []

    @abstractmethod
    async def shape_json(self, document: Any) -> Any:
        """Return the shaped form of a whole (non-streamed) JSON response body.

        Returns ``document`` itself (the same object, never mutated) when nothing changed, so
        the caller can forward the original bytes.
        """

    @abstractmethod
    async def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        """Return the events to send in place of one upstream SSE event (possibly none).

        An unchanged event is returned as the same object (its ``raw`` bytes are forwarded);
        changed or new events have ``raw = None`` and are re-encoded.
        """

    async def finish(self) -> list[SSEEvent]:
        """Events to append when the upstream stream ends (none by default)."""
        return []

    @abstractmethod
    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        """The dialect's error body, used when a JSON response must be replaced by an error."""

    @abstractmethod
    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        """The dialect's mid-stream error frame(s), sent before a stream is cut short."""

    def _sync_chars(self) -> None:
        """Copy the editor's character counts into the stats."""
        stats = self.stats
        if (stats.seen_chars, stats.exposed_chars) != (
            self.editor.seen_chars,
            self.editor.exposed_chars,
        ):
            stats.seen_chars = self.editor.seen_chars
            stats.exposed_chars = self.editor.exposed_chars
            stats.refresh()

    def _record_usage(self, usage: dict[str, Any], reasoning_tokens: int | None) -> None:
        self.stats.usage = usage
        if reasoning_tokens is not None:
            self.stats.usage_reasoning_tokens = reasoning_tokens
        self._sync_chars()
        self.stats.refresh()

    def _keep(self, keys: list[str], value: Any, *, complete: bool = True) -> None:
        if not self.options.keep or not self.removes_reasoning or not keys:
            return
        if complete:
            self.kept.append(KeptReasoning(tuple(keys), value))
            self.stats.kept_items += 1
        else:
            self.stats.unkept_items += 1

    def _exposed_usage(self, usage: dict[str, Any], path: tuple[str, str]) -> dict[str, Any]:
        """``usage`` with its reasoning count (``path``) set to the reasoning tokens exposed.

        Totals stay as sent (billing truth); only the reasoning breakdown tells the client how
        much reasoning it was shown. Unchanged (the same object) in ``full`` mode or when the
        usage has no such count.
        """
        outer, inner = path
        details = usage.get(outer)
        if not self.removes_reasoning or not isinstance(details, dict) or inner not in details:
            return usage
        self._sync_chars()
        exposed = self.stats.exposed_tokens
        if details[inner] == exposed:
            return usage
        return {**usage, outer: {**details, inner: exposed}}


def estimate_tokens(chars: int) -> int:
    """A cheap, deterministic token estimate: about four characters per token."""
    return (chars + 3) // 4
