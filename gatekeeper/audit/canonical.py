"""Canonical JSON and the entry hash that chains the decision log.

The canonical form of a JSON value (what is hashed and what the JSONL sink writes) is:

- objects: members sorted by key, compared by Unicode code point (the same order as comparing
  the UTF-8 bytes); no duplicate keys;
- no whitespace between tokens;
- strings: UTF-8, not ASCII-escaped; ``"`` and ``\\`` are escaped, as are control characters
  U+0000..U+001F (``\\b \\t \\n \\f \\r`` in short form, the rest as ``\\u00XX``, lowercase
  hex); everything else, including U+007F and U+2028, is written as is;
- integers in decimal without a fraction or exponent, from -2^63 to 2^64-1;
- other numbers (binary64 floats): the shortest digits ``d1..dn`` that read back as the same
  float, with the value written as ``0.d1..dn * 10^k``: for ``0 < k <= 16`` plain decimal with at
  least one fractional digit (``123.0``, ``1.5``); for ``-5 < k <= 0`` ``0.`` then ``-k`` zeros
  then the digits (``0.00001``); otherwise ``d1[.d2..dn]e<k-1>`` (``1e16``, ``1e-7``,
  ``1.5e300``: no ``+`` sign, no leading zeros); ``-0.0`` and ``0.0`` as such. NaN and the
  infinities are not JSON: they are written as ``null``;
- ``true``, ``false``, ``null`` as such.

This is RFC 8785 (JCS) in spirit: sorted keys, no whitespace, UTF-8, but it keeps a float
spelling close to orjson's (which writes it) instead of ECMAScript's, since decision events hold
few floats and the hash must be cheap. orjson releases differ on the exponent sign (3.8 writes
``1e16``, 3.13 ``1e+16``), so the output is normalised to the definition above: the hash must not
depend on which orjson version wrote or verifies a log. ``tests/audit/test_canonical.py`` holds
an independent reference encoder that pins this definition.

An entry's hash is ``"sha256:" + hex(SHA-256(canonical(entry)))``; each entry carries the hash of
the one before it (``gatekeeper.prev_hash``), the first entry of a log carries ``GENESIS_HASH``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

HASH_PREFIX = "sha256:"
GENESIS_HASH = HASH_PREFIX + "0" * 64
_OPTIONS = orjson.OPT_SORT_KEYS


class NotCanonicalizable(ValueError):
    """The value cannot be written in canonical JSON (e.g. a NaN, a huge int, a non-str key)."""


# A JSON string (skipped as a whole) or an exponent's plus sign (removed).
_STRING_OR_EXPONENT_PLUS = re.compile(rb'"(?:[^"\\]|\\.)*"|(?<=[0-9])e\+')


def _drop_plus(match: re.Match[bytes]) -> bytes:
    text = match.group(0)
    return text if text[:1] == b'"' else b"e"


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value`` (see the module docstring)."""
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise NotCanonicalizable(str(exc)) from exc
    if b"e+" in out:  # rare: only some orjson versions, only floats >= 1e16
        out = _STRING_OR_EXPONENT_PLUS.sub(_drop_plus, out)
    return out


#: hashlib lets the interpreter lock go while it hashes 2,048 bytes or more (one call). The
#: writer thread hashes every event, and each time it lets the lock go it must wait to get it
#: back from the busy event loop: it hashes in smaller pieces instead, keeping the lock.
_GIL_FREE_PIECE = 2047


def digest(canonical: bytes) -> str:
    """The hash of already-canonical bytes, as written in the log."""
    if len(canonical) <= _GIL_FREE_PIECE:
        return HASH_PREFIX + hashlib.sha256(canonical).hexdigest()
    hasher = hashlib.sha256()
    view = memoryview(canonical)
    for start in range(0, len(canonical), _GIL_FREE_PIECE):
        hasher.update(view[start : start + _GIL_FREE_PIECE])
    return HASH_PREFIX + hasher.hexdigest()


def entry_hash(entry: Any) -> str:
    """The hash of one log entry: SHA-256 over its canonical JSON."""
    return digest(canonical_json(entry))
