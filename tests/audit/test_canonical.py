"""The canonical JSON definition (gatekeeper/audit/canonical.py), pinned by an independent
reference encoder written from the definition alone."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.audit.canonical import GENESIS_HASH, canonical_json, entry_hash

_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def reference(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return '"' + "".join(_char(c) for c in value) + '"'
    if isinstance(value, list):
        return "[" + ",".join(reference(v) for v in value) + "]"
    items = sorted(value.items())  # Python orders str by code point
    return "{" + ",".join(reference(k) + ":" + reference(v) for k, v in items) + "}"


def _char(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    return f"\\u{ord(c):04x}" if ord(c) < 0x20 else c


def _float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        return "null"
    if f == 0:
        return "-0.0" if math.copysign(1, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    mantissa, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits, k = whole + frac, len(whole) + int(exp or 0)
    while digits.startswith("0") and len(digits) > 1:
        digits, k = digits[1:], k - 1
    digits = digits.rstrip("0") or "0"
    n = len(digits)
    if 0 < k <= 16:
        text = digits + "0" * (k - n) + ".0" if n <= k else digits[:k] + "." + digits[k:]
    elif -5 < k <= 0:
        text = "0." + "0" * -k + digits
    else:
        text = digits[0] + ("." + digits[1:] if n > 1 else "") + f"e{k - 1}"
    return sign + text


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_follows_the_definition(value: Any) -> None:
    assert canonical_json(value).decode() == reference(value)


@given(json_values)
def test_canonical_json_is_stable_across_a_round_trip(value: Any) -> None:
    once = canonical_json(value)
    assert canonical_json(orjson.loads(once)) == once


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1e21, "1e21", id="big-exponent"),
        pytest.param(1e16, "1e16", id="seventeen-digits"),
        pytest.param(1e15, "1000000000000000.0", id="sixteen-digits"),
        pytest.param(1e-7, "1e-7", id="small-exponent"),
        pytest.param(0.00001, "0.00001", id="small-plain"),
        pytest.param({"b": 1, "a": [1, 2.5]}, '{"a":[1,2.5],"b":1}', id="sorted-keys"),
        pytest.param("é\u2028\x7f\x01", '"é\u2028\x7f\\u0001"', id="utf8-not-escaped"),
        pytest.param(
            {"s": '1e+16 \\" e+3', "f": 2e300},
            '{"f":2e300,"s":"1e+16 \\\\\\" e+3"}',
            id="exponent-text-in-strings-kept",
        ),
    ],
)
def test_canonical_examples(value: Any, expected: str) -> None:
    assert canonical_json(value).decode() == expected


def test_entry_hash_is_sha256_of_the_canonical_bytes() -> None:
    import hashlib

    entry = {"z": 1, "a": "x"}
    assert entry_hash(entry) == "sha256:" + hashlib.sha256(b'{"a":"x","z":1}').hexdigest()
    assert GENESIS_HASH == "sha256:" + "0" * 64
