"""Summarisers: what ``summary`` mode shows in place of a reasoning trace.

A ``Summariser`` turns the text of one reasoning block (an Anthropic thinking block, a Responses
reasoning item, one chat choice's reasoning) into a short text. The default,
``ExtractiveSummariser``, needs no model: it picks whole sentences of the trace itself,
deterministically, within the token budget. An API team can plug in a model-backed summariser
(any object with an async ``summarise`` method) through ``shaping.summariser`` in the settings
(``"package.module:attribute"``) or by setting ``Gatekeeper.summariser``.

Whatever the summariser returns, gatekeeper bounds it (``bound_summary``): at most ``max_tokens``
tokens at gatekeeper's estimate of four characters per token, so a misbehaving summariser cannot
leak the trace; and the shaper marks it with ``SUMMARY_PREFIX`` so a reader can tell a summary
from the model's own words.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from typing import Protocol, runtime_checkable

from gatekeeper.errors import ConfigurationError

#: Put in front of every summary shown to a client.
SUMMARY_PREFIX = "[summary] "
#: Characters per token in gatekeeper's token estimate (``gatekeeper.reasoning.estimate_tokens``).
CHARS_PER_TOKEN = 4

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
# Short function words carry no topic; they are not counted when scoring a sentence.
_STOP_WORDS = (
    "the a an and or but if then so of to in on at by for with from as is are was were be been "
    "it its this that these those i we you he she they me my our your their there here what "
    "which who whom how why when where not no do does did can could should would will just "
    "also than too very into about over under more most some any each all one two let"
)
_STOP = frozenset(_STOP_WORDS.split(" "))


@runtime_checkable
class Summariser(Protocol):
    """Summarises one reasoning text. Must be safe to call concurrently."""

    async def summarise(self, text: str, max_tokens: int) -> str:
        """A summary of ``text`` in at most ``max_tokens`` tokens (about four characters each).

        Return ``""`` for nothing to show. The result is bounded and marked by the caller.
        """
        ...


class ExtractiveSummariser:
    """Whole sentences of the trace, chosen by how many of its frequent words they hold.

    Deterministic (the same text always gives the same summary) and cheap (one pass over the
    text). Sentences are scored by the summed frequency of their content words, divided by the
    square root of their length so long sentences do not win by size alone; sentences under six
    words (headings, fragments) score less; the first sentence (usually the restated question)
    gets a bonus. The best sentences that fit the budget are
    shown in their original order. When not even one fits, the best one is cut at a word
    boundary and ends with an ellipsis.
    """

    async def summarise(self, text: str, max_tokens: int) -> str:
        return summarise_extractive(text, max_tokens)


def summarise_extractive(text: str, max_tokens: int) -> str:
    """The ``ExtractiveSummariser`` algorithm as a plain function."""
    budget = max_tokens * CHARS_PER_TOKEN
    if budget <= 0:
        return ""
    sentences = [" ".join(s.split()) for s in _SENTENCE_END.split(text)]
    sentences = [s for s in sentences if s]
    if not sentences:
        return ""
    frequency = Counter(
        w for s in sentences for w in (m.lower() for m in _WORD.findall(s)) if w not in _STOP
    )
    scores: list[tuple[float, int]] = []
    for position, sentence in enumerate(sentences):
        words = [w.lower() for w in _WORD.findall(sentence)]
        content = [w for w in words if w not in _STOP]
        score = sum(frequency[w] for w in content) / max(1.0, len(words) ** 0.5)
        # Headings and fragments ("**Planning**", "Hmm.") say little on their own; one or two
        # words say nothing worth the space.
        score *= min(1.0, len(words) / 6) if len(words) > 2 else 0.0
        if position == 0:
            score *= 1.5
        scores.append((-score, position))
    chosen: list[int] = []
    used = 0
    for score, position in sorted(scores):
        if score == 0 and chosen:
            break  # no topic word at all ("Hmm."): not worth the space
        size = len(sentences[position]) + (1 if chosen else 0)
        if used + size <= budget:
            chosen.append(position)
            used += size
    if not chosen:
        return _cut(sentences[sorted(scores)[0][1]], budget)
    return " ".join(sentences[p] for p in sorted(chosen))


def _cut(sentence: str, budget: int) -> str:
    if budget <= 1:
        return ""
    head = sentence[: budget - 1]
    space = head.rfind(" ")
    if space > budget // 2:
        head = head[:space]
    return head.rstrip() + "…"


def bound_summary(summary: str, max_tokens: int) -> str:
    """``summary`` cut to ``max_tokens`` tokens (characters beyond the budget are dropped)."""
    budget = max(0, max_tokens) * CHARS_PER_TOKEN
    summary = summary.strip()
    return summary if len(summary) <= budget else summary[:budget]


def load_summariser(spec: str) -> Summariser:
    """The summariser named by ``spec``: ``"extractive"`` or ``"package.module:attribute"``.

    The attribute may be a summariser instance, or a class or factory called without arguments
    that returns one. Raises ``ConfigurationError`` when it cannot be loaded or has no async
    ``summarise`` method.
    """
    if spec == "extractive":
        return ExtractiveSummariser()
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigurationError(
            f"shaping.summariser must be 'extractive' or 'package.module:attribute', not {spec!r}"
        )
    try:
        target: object = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load summariser {spec!r}: {exc}") from exc
    # A class has a ``summarise`` attribute too, so it would pass the protocol check: call it.
    if isinstance(target, type) or (not hasattr(target, "summarise") and callable(target)):
        target = target()
    if not isinstance(target, Summariser) or isinstance(target, type):
        raise ConfigurationError(f"summariser {spec!r} has no async summarise(text, max_tokens)")
    return target


__all__ = [
    "CHARS_PER_TOKEN",
    "SUMMARY_PREFIX",
    "ExtractiveSummariser",
    "Summariser",
    "bound_summary",
    "load_summariser",
    "summarise_extractive",
]
