"""A prompt's template: its text with the parts a generator fills in abstracted away.

Extraction campaigns send millions of prompts made from a few templates ("Solve step by step
and show your reasoning: a train leaves Paris at 9:40 at 120 km/h ..."), with numbers, names
and quoted snippets changed from one prompt to the next. The skeleton replaces

- URLs by ``<url>`` and e-mail addresses by ``<email>``,
- quoted spans ("…", “…”, «…», `…`, and '…' after a non-letter) by ``<q>``,
- numbers (digits with separators, decimals, exponents, percentages) by ``<n>``,
- capitalised words (names, places, sentence starts; ASCII and Latin-1 capitals) by ``<w>``,

collapses runs of one placeholder ("New York City" and "Paris" both become ``<w>``),
lower-cases the rest and hashes the result (BLAKE2b, 64 bits, hex). Two prompts from one
template share the hash; the text itself is never stored.

Paraphrased prompts do not share a skeleton: this catches template filling, not rewording.

Cost: every expression starts with a literal character (digits and capitals are first mapped
to marker characters with ``str.translate``), so the regular-expression engine skips through
the text at memchr speed: about 10 µs per kilobyte.
"""

from __future__ import annotations

import hashlib
import re

_CAPITALS = "ABCDEFGHIJKLMNOPQRSTUVWXYZÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞ"
_CAPITAL, _DIGIT = "\x01", "\x02"
_MARKERS = str.maketrans(
    {**dict.fromkeys(_CAPITALS, _CAPITAL), **dict.fromkeys("0123456789", _DIGIT)}
)

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_QUOTED = tuple(
    re.compile(expression)
    for expression in (
        r'"[^"\n]{0,400}"',
        r"“[^”\n]{0,400}”",
        r"«[^»\n]{0,400}»",
        r"`[^`\n]{0,400}`",
        # A single quote counts only after a non-letter, so "don't ... it's" is not a span.
        r"'(?<![\w']')[^'\n]{1,400}'(?![\w'])",
    )
)
_WORD = re.compile(_CAPITAL + r"[\w'\u2019-]*")
_NUMBER = re.compile(_DIGIT + "[" + _DIGIT + r",._:/]*(?:[eE][-+]?" + _DIGIT + "+)?%?")
_RUNS = re.compile(r"<(n|w|q|url|email)>(?:[\s,]*<\1>)+")


def skeleton(text: str) -> str:
    """The normalised skeleton of ``text`` (see the module docstring)."""
    if "://" in text or "www." in text or "WWW." in text:
        text = _URL.sub("<url>", text)
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    for quote, regex in zip(('"', "“", "«", "`", "'"), _QUOTED, strict=True):
        if quote in text:
            text = regex.sub("<q>", text)
    text = text.translate(_MARKERS)
    text = _NUMBER.sub("<n>", _WORD.sub("<w>", text))
    return _RUNS.sub(r"<\1>", text.lower()).strip()


def template_hash(text: str) -> str:
    """The 16-hex-digit hash of ``text``'s skeleton."""
    return skeleton_hash(skeleton(text))


def skeleton_hash(skeleton_text: str) -> str:
    """The 16-hex-digit hash of a skeleton already computed."""
    return hashlib.blake2b(skeleton_text.encode(), digest_size=8).hexdigest()
