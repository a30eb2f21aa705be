"""Canonical JSON (RFC 8785, JCS) and the entry hash that chains the decision log.

Every line of the log is the JSON Canonicalization Scheme form of its entry (RFC 8785):

- objects: members sorted by key, compared as UTF-16 code units; no duplicate keys;
- no whitespace between tokens;
- strings: UTF-8, not ASCII-escaped; ``"`` and ``\\`` are escaped, as are control characters
  U+0000..U+001F (``\\b \\t \\n \\f \\r`` in short form, the rest as ``\\u00XX``, lowercase
  hex); everything else, including U+007F and U+2028, is written as is;
- numbers as ECMAScript writes a binary64 number (``Number.prototype.toString``): the shortest
  digits that read back as the same double; plain decimal from 1e-6 up to 1e21 (``3``, ``0.5``,
  ``0.000001``, ``10000000000000000``), otherwise ``d[.ddd]e±n`` (``1e+21``, ``1e-7``); ``-0``
  is written ``0``;
- ``true``, ``false``, ``null``.

Two rules make any value writable in that form without losing it: a number written as an integer
beyond ±(2^53 - 1) (an integer such as a nanosecond timestamp, or an integral float under 1e21)
is written as a decimal *string*, since a reader would take it for an integer a double does not
hold exactly, and JCS has no other way to write it; a NaN or an infinity (not JSON) is written as
``null``. A third-party RFC 8785 implementation that reads a line back and canonicalises it again
gets the same bytes (``tests/audit/test_canonical.py`` checks that with the ``rfc8785`` package).

Speed: the writer thread seals thousands of entries a second, so the common case is orjson's own
output (sorted keys, 53-bit integers enforced), which already is JCS except for the spelling of
integral floats (``3.0`` for JCS's ``3``): those ``.0`` are cut out of the bytes, outside strings.
Anything rarer (a big integer, a float with an exponent, ``-0.0``, a backslash or a character
beyond U+FFFF anywhere) takes the general path, which rebuilds the value with each number
pre-spelled (``orjson.Fragment``) and each object in UTF-16 key order.

An entry's hash is ``"sha256:" + hex(SHA-256(line))`` over the line's exact bytes (without its
newline); each entry carries the hash of the one before it (``gatekeeper.prev_hash``), the first
entry of a log carries ``GENESIS_HASH``.

Format 1 (logs written before ``gatekeeper.format`` existed) used orjson's spelling of floats
(``3.0``, ``1e16``) and wrote big integers as numbers; ``canonical_json_v1`` keeps that rule so
``verify`` can still check those lines are in the form they were written in.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import orjson

HASH_PREFIX = "sha256:"
GENESIS_HASH = HASH_PREFIX + "0" * 64
#: The line format written now (``gatekeeper.format``); entries without the field are format 1.
FORMAT = 2
MAX_SAFE_INTEGER = 2**53 - 1
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_DELIMITERS = frozenset(b",]}")
_NUMBER_START = frozenset(b":,[")


class NotCanonicalizable(ValueError):
    """The value cannot be written in canonical JSON (e.g. a non-str key, an unknown type)."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 bytes of ``value`` (see the module docstring)."""
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return _general(value)  # a big integer, or not JSON at all (that raises)
    # Each check is one fast scan (rfind: CPython's reverse search is the faster one for this
    # needle); together they say whether orjson's bytes can be patched. orjson spells a large
    # float ``1e+16`` (JCS: ``10000000000000000``) and a small one ``1.5e-6`` (JCS:
    # ``0.0000015``); a string holding ``e+`` or ``e-6`` only takes the general path in vain
    # (a bare ``+``, as in the pack's note ``evidence:cluster_heavy+templated``, does not).
    # ``+`` is rare in JSON: looking for it alone (one memchr) spares most lines the slower
    # search for ``e+``.
    if (
        b"\\" in out
        or (b"+" in out and b"e+" in out)
        or out.rfind(b"e-6") >= 0
        or (not out.isascii() and _astral(out))
    ):
        return _general(value)
    if b".0" not in out:
        return out
    return _drop_integral_fractions(out) or _general(value)


def _astral(out: bytes) -> bool:
    """Whether the UTF-8 ``out`` holds a character beyond U+FFFF (sorted apart by UTF-16)."""
    return any(lead in out for lead in (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4"))


def _drop_integral_fractions(out: bytes) -> bytes | None:
    """``out`` with the ``.0`` of every integral float cut (``3.0`` → ``3``), or ``None`` when a
    case needs the general path (``-0.0``). ``out`` holds no backslash, so a position is inside
    a string exactly when an odd number of quotes precede it."""
    pieces = out.split(b".0")
    parts = [pieces[0]]
    before = pieces[0]
    quotes = before.count(b'"')
    changed = False
    last = len(pieces) - 1
    for index, piece in enumerate(pieces[1:], 1):
        if ((piece[:1] and piece[0] in _DELIMITERS) or (index == last and not piece)) and not (
            quotes & 1
        ):
            if before[-2:] == b"-0" and (len(before) < 3 or before[-3] in _NUMBER_START):
                return None  # -0.0: JCS writes 0
            if len(before) >= 16 and before[-16:].isdigit():
                return None  # maybe beyond 2^53: written as a string
            changed = True
        else:
            parts.append(b".0")
        parts.append(piece)
        quotes += piece.count(b'"')
        before = piece
    return b"".join(parts) if changed else out


def _general(value: Any) -> bytes:
    try:
        return orjson.dumps(_prepared(value))
    except (TypeError, orjson.JSONEncodeError, RecursionError) as exc:
        raise NotCanonicalizable(str(exc)) from exc


def _prepared(value: Any) -> Any:
    """``value`` rebuilt for orjson to write as JCS: numbers pre-spelled, objects in order."""
    kind = type(value)
    if kind is dict:
        try:
            keys = sorted(value, key=_utf16)
        except (TypeError, AttributeError) as exc:
            raise NotCanonicalizable(f"object keys must be strings: {exc}") from exc
        return {key: _prepared(value[key]) for key in keys}
    if kind is list or kind is tuple:
        return [_prepared(item) for item in value]
    if kind is float:
        text = number(value)
        if value.is_integer() and abs(value) > MAX_SAFE_INTEGER and "e" not in text:
            return text  # a reader would take it for an integer beyond 2^53
        return orjson.Fragment(text)
    if kind is int:
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, bool | str) or value is None:
        return value
    # Subclasses (an IntEnum, an OrderedDict…) are written as their base type.
    if isinstance(value, dict):
        return _prepared(dict(value))
    if isinstance(value, list | tuple):
        return _prepared(list(value))
    if isinstance(value, float):
        return _prepared(float(value))
    if isinstance(value, int):
        return _prepared(int(value))
    raise NotCanonicalizable(f"{type(value).__name__} is not JSON")


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def number(value: float) -> str:
    """ECMAScript's spelling of a binary64 number (RFC 8785, section 3.2.2.3); NaN and the
    infinities are written ``null``."""
    if math.isnan(value) or math.isinf(value):
        return "null"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    # value = int(stripped) * 10 ** (n - k)
    n = k + int(exponent or 0) - len(fraction) + (len(digits) - k)
    if k <= n <= 21:
        text = stripped + "0" * (n - k)
    elif 0 < n <= 21:
        text = stripped[:n] + "." + stripped[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + stripped
    else:
        tail = "." + stripped[1:] if k > 1 else ""
        text = f"{stripped[0]}{tail}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


# -- format 1 ------------------------------------------------------------------------------

# A JSON string (skipped as a whole) or an exponent's plus sign (removed).
_STRING_OR_EXPONENT_PLUS = re.compile(rb'"(?:[^"\\]|\\.)*"|(?<=[0-9])e\+')


def _drop_plus(match: re.Match[bytes]) -> bytes:
    text = match.group(0)
    return text if text[:1] == b'"' else b"e"


def canonical_json_v1(value: Any) -> bytes:
    """The canonical form of format 1 (orjson's sorted output, float exponents without ``+``),
    for checking lines of logs written before format 2."""
    try:
        out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise NotCanonicalizable(str(exc)) from exc
    if b"e+" in out:
        out = _STRING_OR_EXPONENT_PLUS.sub(_drop_plus, out)
    return out


#: hashlib lets the interpreter lock go while it hashes 2,048 bytes or more (one call). The
#: writer thread hashes every event, and each time it lets the lock go it must wait to get it
#: back from the busy event loop: it hashes in smaller pieces instead, keeping the lock.
_GIL_FREE_PIECE = 2047


def digest(line: bytes) -> str:
    """The hash of a line's exact bytes (without its newline), as written in the log."""
    if len(line) <= _GIL_FREE_PIECE:
        return HASH_PREFIX + hashlib.sha256(line).hexdigest()
    hasher = hashlib.sha256()
    view = memoryview(line)
    for start in range(0, len(line), _GIL_FREE_PIECE):
        hasher.update(view[start : start + _GIL_FREE_PIECE])
    return HASH_PREFIX + hasher.hexdigest()


def entry_hash(entry: Any) -> str:
    """The hash the line of ``entry`` has when written now: SHA-256 over its canonical JSON."""
    return digest(canonical_json(entry))
