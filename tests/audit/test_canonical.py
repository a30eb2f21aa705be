"""The canonical JSON definition (gatekeeper/audit/canonical.py): RFC 8785, checked against a
third-party implementation (the ``rfc8785`` package); and format 1's definition, pinned by an
independent reference encoder written from that definition alone."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.audit.canonical import (
    GENESIS_HASH,
    MAX_SAFE_INTEGER,
    canonical_json,
    canonical_json_v1,
    entry_hash,
)

_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def reference_v1(value: Any) -> str:
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
        return "[" + ",".join(reference_v1(v) for v in value) + "]"
    items = sorted(value.items())  # Python orders str by code point
    return "{" + ",".join(reference_v1(k) + ":" + reference_v1(v) for k, v in items) + "}"


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


def as_written(value: Any) -> Any:
    """What a value reads back as, by the two rules beyond RFC 8785: a number written as an
    integer beyond 2^53 becomes a string, a NaN or an infinity ``null``."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        if value.is_integer() and MAX_SAFE_INTEGER < abs(value) < 1e21:
            return str(int(rfc8785.dumps(value)))
        return value
    if isinstance(value, list):
        return [as_written(v) for v in value]
    return {k: as_written(v) for k, v in value.items()}


@given(json_values)
def test_canonical_json_is_rfc8785(value: Any) -> None:
    """The bytes are what a third-party RFC 8785 implementation writes for the value."""
    assert canonical_json(value) == rfc8785.dumps(as_written(value))


@given(json_values)
def test_a_third_party_recanonicalises_a_line_to_the_same_bytes(value: Any) -> None:
    once = canonical_json(value)
    assert rfc8785.dumps(orjson.loads(once)) == once
    assert canonical_json(orjson.loads(once)) == once


def test_a_decision_entry_with_a_nanosecond_timestamp_recanonicalises(
    tmp_path: Any,
) -> None:
    """The reported case: ``IntegerDomainError: 1796612863316339425 exceeds safe integer
    domain``. The whole stack's event shape, with floats of every spelling."""
    entry = {
        "input": {"time": {"unix_ns": 1796612863316339425, "hour_utc": 4}},
        "result": {"quotas": [{"period": 3600.0, "rate": 200000000000.0, "share": 0.25}]},
        "gatekeeper": {"enforcement": {"remaining": 199999999971.0, "tiny": 1e-6, "neg": -0.0}},
        "labels": {"\U0001f600": "astral key", "\uffff": "BMP key"},
    }
    line = canonical_json(entry)
    assert b'"unix_ns":"1796612863316339425"' in line
    assert b'"period":3600,' in line and b'"tiny":0.000001' in line and b'"neg":0' in line
    assert rfc8785.dumps(orjson.loads(line)) == line


@given(json_values)
def test_format_1_follows_its_definition(value: Any) -> None:
    assert canonical_json_v1(value).decode() == reference_v1(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1e21, "1e+21", id="big-exponent"),
        pytest.param(1e16, '"10000000000000000"', id="seventeen-digits-beyond-2^53"),
        pytest.param(1e15, "1000000000000000", id="sixteen-digits"),
        pytest.param(3.0, "3", id="integral-float"),
        pytest.param(-0.0, "0", id="negative-zero"),
        pytest.param(1e-7, "1e-7", id="small-exponent"),
        pytest.param(1e-6, "0.000001", id="small-plain"),
        pytest.param(2**53, '"9007199254740992"', id="big-integer-as-string"),
        pytest.param(2**53 - 1, "9007199254740991", id="largest-safe-integer"),
        pytest.param(float("nan"), "null", id="nan"),
        pytest.param({"b": 1, "a": [1, 2.5]}, '{"a":[1,2.5],"b":1}', id="sorted-keys"),
        pytest.param({"\U0001f600": 1, "\uffff": 2}, '{"\U0001f600":1,"\uffff":2}',
                     id="utf16-key-order"),
        pytest.param("é\u2028\x7f\x01", '"é\u2028\x7f\\u0001"', id="utf8-not-escaped"),
        pytest.param({"s": "1.0,", "f": [2.0]}, '{"f":[2],"s":"1.0,"}',
                     id="float-text-in-strings-kept"),
        pytest.param(
            {"s": '1e+16 \\" e+3', "f": 2e300},
            '{"f":2e+300,"s":"1e+16 \\\\\\" e+3"}',
            id="exponent-text-in-strings-kept",
        ),
    ],
)  # fmt: skip
def test_canonical_examples(value: Any, expected: str) -> None:
    assert canonical_json(value).decode() == expected


def test_entry_hash_is_sha256_of_the_canonical_bytes() -> None:
    import hashlib

    entry = {"z": 1, "a": "x"}
    assert entry_hash(entry) == "sha256:" + hashlib.sha256(b'{"a":"x","z":1}').hexdigest()
    assert GENESIS_HASH == "sha256:" + "0" * 64
