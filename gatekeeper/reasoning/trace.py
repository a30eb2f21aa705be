"""How each reasoning mode rewrites reasoning text, whatever the dialect.

A response's reasoning arrives as one or more *blocks* (an Anthropic thinking block, a Responses
reasoning item, one chat choice's reasoning), each as text pieces (stream deltas, or one whole
text in a JSON body). A ``TraceEditor`` owns the response-wide state (the token budget of
``truncate`` and ``summary``, whether the truncation marker was shown, the buffer limit, the
character counts); each block gets a ``TraceBlock`` that turns its pieces into what the client
sees:

- ``full``: every piece as is.
- ``drop``: nothing (the dialect removes the block itself).
- ``redact``: ``REDACTED_MARKER`` once per block, nothing else.
- ``truncate``: pieces pass until the response's budget of ``max_tokens`` tokens (four
  characters each) is spent; the piece that crosses it is cut and followed by
  ``TRUNCATED_MARKER``; later pieces and blocks show nothing (a block that starts after the
  budget ran out exactly, before any marker, shows the marker alone).
- ``summary``: nothing while the block streams; when it ends, ``SUMMARY_PREFIX`` plus the
  summariser's summary of the block, bounded by what is left of the budget.

Feeding a text whole or in any number of pieces gives the same result, so a JSON body and the
stream of the same response expose the same text. Blocks keep their original text only when it
is needed (for the summary, or to restore it on a later request: continuity), up to
``buffer_chars`` characters per response; past that, the summary reads the first
``buffer_chars`` characters and the block cannot be restored (``TraceBlock.complete``).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from gatekeeper.reasoning.summarize import (
    CHARS_PER_TOKEN,
    SUMMARY_PREFIX,
    ExtractiveSummariser,
    Summariser,
    bound_summary,
)

REDACTED_MARKER = "[reasoning redacted]"
TRUNCATED_MARKER = " [reasoning truncated]"
#: Prefix of the opaque handles gatekeeper puts where a signature or encrypted payload was.
HANDLE_PREFIX = "gk1."


@dataclass(frozen=True, slots=True)
class ShapingOptions:
    """Settings a shaper needs beyond the decision's ``ReasoningPolicy``."""

    summariser: Summariser = field(default_factory=ExtractiveSummariser)
    #: ``max_tokens`` of ``summary`` when the policy sets none.
    summary_tokens: int = 64
    #: ``max_tokens`` of ``truncate`` when the policy sets none.
    truncate_tokens: int = 256
    #: Keep removed or rewritten reasoning for continuity (``shaper.kept``).
    keep: bool = False
    #: Reasoning characters one response may hold in memory (summaries, continuity).
    buffer_chars: int = 1_000_000


class TraceEditor:
    """The response-wide state of one mode; hands out a ``TraceBlock`` per reasoning block."""

    def __init__(self, mode: str, max_tokens: int | None, options: ShapingOptions) -> None:
        self.mode = mode
        self.options = options
        if max_tokens is None:
            max_tokens = options.summary_tokens if mode == "summary" else options.truncate_tokens
        #: Characters of reasoning still allowed out (``truncate`` and ``summary``).
        self.remaining = max(0, max_tokens) * CHARS_PER_TOKEN
        self.marked = False
        self.seen_chars = 0
        self.exposed_chars = 0
        self.buffer_left = options.buffer_chars
        #: Whether blocks keep their original text (for the summary or for continuity).
        self.buffers = mode == "summary" or (options.keep and mode != "full")

    def block(self) -> TraceBlock:
        return TraceBlock(self)

    @property
    def spent(self) -> bool:
        """``truncate`` has shown its marker: later reasoning shows nothing at all."""
        return self.mode == "truncate" and self.marked


class TraceBlock:
    """One reasoning block under a ``TraceEditor``'s mode."""

    __slots__ = ("_editor", "_parts", "complete", "exposed", "marker_shown", "seen")

    def __init__(self, editor: TraceEditor) -> None:
        self._editor = editor
        self._parts: list[str] = []
        #: False when the block outgrew the buffer: its original text is not fully known.
        self.complete = True
        self.seen = 0
        self.exposed = 0
        self.marker_shown = False

    @property
    def text(self) -> str:
        """The original text seen so far (empty when the mode keeps none)."""
        return "".join(self._parts)

    def keep(self, text: str) -> None:
        """Record a piece of original text without showing anything."""
        if not text:
            return
        editor = self._editor
        self.seen += len(text)
        editor.seen_chars += len(text)
        if editor.buffers and self.complete:
            if len(text) <= editor.buffer_left:
                self._parts.append(text)
                editor.buffer_left -= len(text)
            else:
                self._parts.append(text[: editor.buffer_left])
                editor.buffer_left = 0
                self.complete = False

    def feed(self, text: str) -> str:
        """Record a piece of original text; return what the client sees of it now."""
        self.keep(text)
        if not text:
            return ""
        editor = self._editor
        mode = editor.mode
        if mode == "full":
            self._show(len(text))
            return text
        if mode == "redact":
            if self.marker_shown:
                return ""
            self.marker_shown = True
            return REDACTED_MARKER
        if mode != "truncate" or editor.marked:
            return ""
        if editor.remaining <= 0:
            # The budget ran out exactly at the end of the last piece: the cut is here. Spaced
            # as after a cut within a piece, so the text does not depend on how it was split.
            editor.marked = self.marker_shown = True
            return TRUNCATED_MARKER if self.exposed else TRUNCATED_MARKER.lstrip()
        shown = text[: editor.remaining]
        editor.remaining -= len(shown)
        self._show(len(shown))
        if len(shown) < len(text):
            editor.marked = self.marker_shown = True
            return shown + TRUNCATED_MARKER
        return shown

    async def close(self) -> str:
        """What the client sees when the block ends (the summary, or a marker not yet shown)."""
        editor = self._editor
        if editor.mode == "redact" and not self.marker_shown:
            self.marker_shown = True
            return REDACTED_MARKER
        if editor.mode != "summary" or editor.remaining <= 0:
            return ""
        text = self.text
        if not text.strip():
            return ""
        tokens = editor.remaining // CHARS_PER_TOKEN
        summary = bound_summary(await editor.options.summariser.summarise(text, tokens), tokens)
        if not summary:
            return ""
        editor.remaining -= len(summary)
        self._show(len(summary))
        return SUMMARY_PREFIX + summary

    async def whole(self, text: str) -> str:
        """What the client sees of a block whose whole text is ``text`` (JSON bodies)."""
        shown = self.feed(text)
        return shown + await self.close()

    def _show(self, chars: int) -> None:
        self.exposed += chars
        self._editor.exposed_chars += chars


def handle(*parts: str) -> str:
    """A deterministic opaque handle for a rewritten block, derived from what identifies it.

    It stands where the block's signature or encrypted payload was, so a later request that
    sends the block back can be matched to the original kept for continuity.
    """
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()
    return HANDLE_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")[:27]
