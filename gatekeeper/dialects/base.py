"""What every API dialect provides: reading a request, writing errors, naming its shaper.

A dialect is one wire format (OpenAI chat completions, OpenAI responses, Anthropic messages).
The middleware picks the dialect by request path, asks it for the request facts the policy needs,
formats refusals in the dialect's own error shape (so official SDKs raise their usual
exceptions), gets from it a per-response ``ResponseShaper`` (``gatekeeper.reasoning``) that
enforces the decision's reasoning policy on JSON bodies and on SSE events, and, for multi-turn
continuity, asks it which kept reasoning a request's history refers to (``history_keys``) and to
put it back (``restore_history``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from gatekeeper.contract import PromptFeatures, ReasoningPolicy
from gatekeeper.reasoning.shaper import estimate_tokens

if TYPE_CHECKING:
    from gatekeeper.reasoning.shaper import ResponseShaper
    from gatekeeper.reasoning.trace import ShapingOptions


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


class Dialect(ABC):
    """One API wire format."""

    name: ClassVar[str]
    paths: ClassVar[tuple[str, ...]]
    #: The ``ResponseShaper`` class that enforces a reasoning policy on this dialect's responses.
    shaper: ClassVar[type[ResponseShaper]]
    #: Output tokens assumed by ``estimated_tokens`` when the request sets no maximum.
    default_output_tokens: ClassVar[int] = 4096

    def estimated_tokens(self, prompt_chars: int, max_tokens: int | None) -> int:
        """The request's cost estimate: the prompt's tokens plus its output limit (or the
        dialect's default when the request sets none)."""
        output = max_tokens if max_tokens is not None else self.default_output_tokens
        return estimate_tokens(prompt_chars) + output

    #: Byte strings without which a request body cannot refer to kept reasoning (a cheap test
    #: before parsing it for ``history_keys``).
    history_markers: ClassVar[tuple[bytes, ...]] = ()

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

    def new_shaper(
        self, policy: ReasoningPolicy, options: ShapingOptions | None = None
    ) -> ResponseShaper:
        """A shaper that enforces ``policy`` on one response of this dialect."""
        return self.shaper(policy, options)

    def history_keys(self, body: Any) -> list[str]:
        """Keys of kept reasoning a request's history may need back (none by default)."""
        return []

    def restore_history(self, body: Any, found: dict[str, Any]) -> tuple[Any, int]:
        """``body`` with the kept reasoning in ``found`` (key → value) put back where it belongs,
        and how many blocks were restored. Returns ``body`` itself when nothing changed."""
        return body, 0
