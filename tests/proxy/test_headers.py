"""Header rewriting rules of the reverse proxy (RFC 9110 §7.6.1, RFC 7239)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.proxy.headers import (
    HOP_BY_HOP,
    Hop,
    add_forwarding,
    connection_tokens,
    replace_credentials,
    shapeable_accept_encoding,
    strip_hop_by_hop,
)

H = list[tuple[bytes, bytes]]


def as_dict(headers: H) -> dict[bytes, bytes]:
    return dict(headers)


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        ([(b"connection", b"close")], []),
        (
            [
                (b"Connection", b"X-Foo, x-bar"),
                (b"x-foo", b"1"),
                (b"X-Bar", b"2"),
                (b"x-baz", b"3"),
            ],
            [(b"x-baz", b"3")],
        ),
        ([(b"keep-alive", b"timeout=5"), (b"te", b"trailers"), (b"upgrade", b"h2c")], []),
        (
            [(b"transfer-encoding", b"chunked"), (b"content-length", b"10")],
            [(b"content-length", b"10")],
        ),
        ([(b"proxy-authorization", b"Basic x"), (b"proxy-connection", b"keep-alive")], []),
        (
            [(b"proxy-authenticate", b"Basic"), (b"authorization", b"Bearer k")],
            [(b"authorization", b"Bearer k")],
        ),
        ([(b"connection", b"a"), (b"connection", b"b"), (b"a", b"1"), (b"b", b"2")], []),
    ],
    ids=[
        "connection",
        "named-by-connection",
        "keep-alive-te-upgrade",
        "transfer-encoding",
        "proxy-fields",
        "authorization-is-end-to-end",
        "several-connection-lines",
    ],
)
def test_hop_by_hop_fields_are_removed(headers: H, kept: H) -> None:
    assert strip_hop_by_hop(headers) == kept


names = st.sampled_from(
    [b"connection", b"keep-alive", b"te", b"upgrade", b"x-a", b"x-b", b"accept", b"via"]
)
values = st.sampled_from([b"x-a", b"x-b, x-a", b"close", b"1", b"", b"X-B"])


@given(st.lists(st.tuples(names, values), max_size=12))
def test_no_hop_by_hop_or_connection_named_field_survives(headers: H) -> None:
    out = strip_hop_by_hop(headers)
    named = connection_tokens(headers)
    assert all(name not in HOP_BY_HOP and name not in named for name, _ in out)
    # Everything else is kept, in order.
    expected = [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in named]
    assert out == expected


@pytest.mark.parametrize(
    ("style", "peer", "trusted", "before", "after"),
    [
        (
            "x-forwarded",
            "192.0.2.1",
            False,
            [],
            {
                b"x-forwarded-for": b"192.0.2.1",
                b"x-forwarded-proto": b"http",
                b"x-forwarded-host": b"api.example",
            },
        ),
        (
            "x-forwarded",
            "10.0.0.2",
            True,
            [(b"x-forwarded-for", b"203.0.113.5"), (b"x-forwarded-proto", b"https")],
            {
                b"x-forwarded-for": b"203.0.113.5, 10.0.0.2",
                b"x-forwarded-proto": b"https",
                b"x-forwarded-host": b"api.example",
            },
        ),
        (
            "x-forwarded",
            "192.0.2.1",
            False,
            [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https")],
            {
                b"x-forwarded-for": b"6.6.6.6, 192.0.2.1",
                b"x-forwarded-proto": b"http",
                b"x-forwarded-host": b"api.example",
            },
        ),
        (
            "forwarded",
            "2001:db8::1",
            False,
            [],
            {b"forwarded": b'for="[2001:db8::1]";proto=http;host="api.example"'},
        ),
        (
            "forwarded",
            "192.0.2.1",
            True,
            [(b"forwarded", b"for=203.0.113.5")],
            {b"forwarded": b'for=203.0.113.5, for=192.0.2.1;proto=http;host="api.example"'},
        ),
        (
            "none",
            "192.0.2.1",
            False,
            [(b"x-forwarded-for", b"6.6.6.6")],
            {b"x-forwarded-for": b"6.6.6.6"},
        ),
    ],
    ids=[
        "xff-new",
        "xff-appended-proto-kept-from-trusted-peer",
        "xff-appended-proto-overwritten-for-untrusted-peer",
        "rfc7239-ipv6-quoted",
        "rfc7239-appended",
        "none",
    ],
)
def test_forwarding_headers(
    style: str, peer: str, trusted: bool, before: H, after: dict[bytes, bytes]
) -> None:
    headers = list(before)
    add_forwarding(headers, Hop(peer, "http", b"api.example", trusted), style)
    assert as_dict(headers) == after


def test_both_styles_write_both_headers() -> None:
    headers: H = []
    add_forwarding(headers, Hop("192.0.2.1", "https", None, False), "both")
    assert as_dict(headers) == {
        b"x-forwarded-for": b"192.0.2.1",
        b"x-forwarded-proto": b"https",
        b"forwarded": b"for=192.0.2.1;proto=https",
    }


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([(b"authorization", b"Bearer gk-1")], [(b"authorization", b"Bearer up")]),
        ([(b"x-api-key", b"gk-1")], [(b"x-api-key", b"up")]),
        (
            [(b"x-api-key", b"gk-1"), (b"authorization", b"Bearer gk-1")],
            [(b"x-api-key", b"up"), (b"authorization", b"Bearer up")],
        ),
        ([], [(b"authorization", b"Bearer up")]),
    ],
    ids=["bearer", "x-api-key", "both", "neither"],
)
def test_upstream_key_goes_where_the_client_put_its_own(before: H, after: H) -> None:
    headers = list(before)
    replace_credentials(headers, "up")
    assert headers == after


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gzip, deflate, br, zstd", b"gzip, deflate"),
        (b"br", b"identity"),
        (b"gzip;q=0.5, br;q=1", b"gzip;q=0.5"),
        (b"identity", b"identity"),
    ],
    ids=["sdk-default", "only-brotli", "weights-kept", "identity"],
)
def test_accept_encoding_is_limited_to_what_shaping_decodes(value: bytes, expected: bytes) -> None:
    assert shapeable_accept_encoding(value) == expected
