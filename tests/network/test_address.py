"""Client address behind trusted proxies: what a client can and cannot make gatekeeper believe."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from gatekeeper.network import ClientAddress, ClientAddressResolver, parse_ip

Resolver = Callable[..., ClientAddressResolver]


@dataclass(frozen=True)
class Case:
    id: str
    peer: str | None
    headers: dict[str, str] | list[tuple[str, str]] | list[tuple[bytes, bytes]]
    ip: str | None
    forwarded: bool = False
    spoofed: bool = False
    malformed: bool = False


XFF_CASES = [
    Case("untrusted peer, no header", "198.51.100.7", {}, "198.51.100.7"),
    Case(
        "untrusted peer: header ignored and flagged",
        "198.51.100.7",
        {"X-Forwarded-For": "203.0.113.9"},
        "198.51.100.7",
        spoofed=True,
    ),
    Case("trusted peer, no header", "10.0.0.1", {}, "10.0.0.1"),
    Case(
        "trusted peer, one hop", "10.0.0.1", {"x-forwarded-for": "203.0.113.9"}, "203.0.113.9", True
    ),
    Case(
        "several trusted hops are skipped",
        "10.0.0.1",
        {"X-Forwarded-For": "203.0.113.9, 10.1.1.1, 192.168.1.1"},
        "203.0.113.9",
        True,
    ),
    Case(
        "spoofed left-most entries are never used",
        "10.0.0.1",
        {"X-Forwarded-For": "6.6.6.6, 1.1.1.1, 203.0.113.9, 10.0.0.2"},
        "203.0.113.9",
        True,
    ),
    Case(
        "spoofed entry claiming a trusted address",
        "10.0.0.1",
        {"X-Forwarded-For": "10.9.9.9, 203.0.113.9"},
        "203.0.113.9",
        True,
    ),
    Case(
        "every hop trusted: the left-most is the client",
        "10.0.0.1",
        {"X-Forwarded-For": "10.0.0.5, 10.0.0.6"},
        "10.0.0.5",
        True,
    ),
    Case(
        "repeated header lines are joined in order",
        "10.0.0.1",
        [("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9, 10.0.0.2")],
        "203.0.113.9",
        True,
    ),
    Case(
        "ASGI byte headers",
        "10.0.0.1",
        [(b"x-forwarded-for", b"203.0.113.9"), (b"host", b"example.com")],
        "203.0.113.9",
        True,
    ),
    Case(
        "IPv4 with a port", "10.0.0.1", {"x-forwarded-for": "203.0.113.9:5555"}, "203.0.113.9", True
    ),
    Case("IPv6", "10.0.0.1", {"x-forwarded-for": "2001:DB8::1"}, "2001:db8::1", True),
    Case("IPv6 in brackets", "10.0.0.1", {"x-forwarded-for": "[2001:db8::1]"}, "2001:db8::1", True),
    Case(
        "IPv6 in brackets with a port",
        "10.0.0.1",
        {"x-forwarded-for": "[2001:db8::1]:443"},
        "2001:db8::1",
        True,
    ),
    Case(
        "IPv6 trusted peer and hops",
        "2001:db8:ffff::1",
        {"x-forwarded-for": "2001:db8:1::5, 2001:db8:ffff:1::2"},
        "2001:db8:1::5",
        True,
    ),
    Case(
        "IPv4-mapped hop is normalised",
        "10.0.0.1",
        {"x-forwarded-for": "::ffff:203.0.113.9"},
        "203.0.113.9",
        True,
    ),
    Case(
        "IPv4-mapped peer is trusted as IPv4",
        "::ffff:10.0.0.1",
        {"x-forwarded-for": "203.0.113.9"},
        "203.0.113.9",
        True,
    ),
    Case(
        "empty list elements are skipped",
        "10.0.0.1",
        {"x-forwarded-for": " , 203.0.113.9,, 10.0.0.2 ,"},
        "203.0.113.9",
        True,
    ),
    Case("empty header: the peer", "10.0.0.1", {"x-forwarded-for": " "}, "10.0.0.1"),
    Case(
        "garbage right of the client falls back to the peer",
        "10.0.0.1",
        {"x-forwarded-for": "203.0.113.9, garbage"},
        "10.0.0.1",
        malformed=True,
    ),
    Case(
        "unknown after a trusted hop falls back to that hop",
        "10.0.0.1",
        {"x-forwarded-for": "unknown, 10.0.0.2"},
        "10.0.0.2",
        forwarded=True,
        malformed=True,
    ),
    Case(
        "garbage left of the client is never reached",
        "10.0.0.1",
        {"x-forwarded-for": "<script>, 203.0.113.9"},
        "203.0.113.9",
        True,
    ),
    Case(
        "a client's unbalanced quote does not swallow later hops",
        "10.0.0.1",
        {"x-forwarded-for": '"evil, 203.0.113.9'},
        "203.0.113.9",
        True,
    ),
    Case(
        "brackets around IPv4 are malformed",
        "10.0.0.1",
        {"x-forwarded-for": "[203.0.113.9]"},
        "10.0.0.1",
        malformed=True,
    ),
    Case(
        "port out of range is malformed",
        "10.0.0.1",
        {"x-forwarded-for": "203.0.113.9:99999"},
        "10.0.0.1",
        malformed=True,
    ),
    Case(
        "leading zeros are malformed",
        "10.0.0.1",
        {"x-forwarded-for": "010.000.000.001"},
        "10.0.0.1",
        malformed=True,
    ),
    Case(
        "two addresses in one element are malformed",
        "10.0.0.1",
        {"x-forwarded-for": "203.0.113.9 198.51.100.1"},
        "10.0.0.1",
        malformed=True,
    ),
    Case(
        "no peer (Unix socket), not trusted",
        None,
        {"x-forwarded-for": "203.0.113.9"},
        None,
        spoofed=True,
    ),
    Case("peer that is not an IP", "testclient", {}, None),
]


@pytest.mark.parametrize("case", XFF_CASES, ids=lambda c: c.id)
def test_x_forwarded_for(make_resolver: Resolver, case: Case) -> None:
    result = make_resolver().resolve(case.peer, case.headers)

    assert (result.ip, result.forwarded, result.spoofed, result.malformed) == (
        case.ip,
        case.forwarded,
        case.spoofed,
        case.malformed,
    )


FORWARDED_CASES = [
    Case(
        "for= with other parameters",
        "10.0.0.1",
        {"Forwarded": "for=203.0.113.9;proto=https"},
        "203.0.113.9",
        True,
    ),
    Case(
        "quoted IPv6 with a port",
        "10.0.0.1",
        {"Forwarded": 'for="[2001:db8:cafe::17]:4711"'},
        "2001:db8:cafe::17",
        True,
    ),
    Case(
        "trusted hops skipped, spoofed left-most ignored",
        "10.0.0.1",
        {"Forwarded": "for=6.6.6.6, for=203.0.113.9;proto=http, for=10.0.0.2;by=10.0.0.1"},
        "203.0.113.9",
        True,
    ),
    Case(
        "parameter names are case-insensitive",
        "10.0.0.1",
        {"Forwarded": "For=203.0.113.9"},
        "203.0.113.9",
        True,
    ),
    Case(
        "for=unknown falls back to the peer",
        "10.0.0.1",
        {"Forwarded": "for=unknown"},
        "10.0.0.1",
        malformed=True,
    ),
    Case(
        "obfuscated identifier falls back to the trusted hop",
        "10.0.0.1",
        {"Forwarded": "for=_hidden, for=10.0.0.2"},
        "10.0.0.2",
        forwarded=True,
        malformed=True,
    ),
    Case(
        "element without for=", "10.0.0.1", {"Forwarded": "proto=https"}, "10.0.0.1", malformed=True
    ),
    Case(
        "X-Forwarded-For is not read in this mode",
        "10.0.0.1",
        {"X-Forwarded-For": "203.0.113.9"},
        "10.0.0.1",
    ),
    Case(
        "untrusted peer: Forwarded ignored",
        "198.51.100.7",
        {"Forwarded": "for=203.0.113.9"},
        "198.51.100.7",
        spoofed=True,
    ),
]


@pytest.mark.parametrize("case", FORWARDED_CASES, ids=lambda c: c.id)
def test_rfc7239_forwarded(make_resolver: Resolver, case: Case) -> None:
    result = make_resolver(header="forwarded").resolve(case.peer, case.headers)

    assert (result.ip, result.forwarded, result.spoofed, result.malformed) == (
        case.ip,
        case.forwarded,
        case.spoofed,
        case.malformed,
    )


def test_single_value_cdn_header(make_resolver: Resolver) -> None:
    resolver = make_resolver(header="CF-Connecting-IP")
    headers = {"CF-Connecting-IP": "203.0.113.9", "X-Forwarded-For": "6.6.6.6"}

    assert resolver.resolve("10.0.0.1", headers).ip == "203.0.113.9"


def test_result_keeps_peer_and_chain(make_resolver: Resolver) -> None:
    result = make_resolver().resolve("::ffff:10.0.0.1", {"x-forwarded-for": "6.6.6.6, 203.0.113.9"})

    assert result == ClientAddress(
        ip="203.0.113.9",
        peer_ip="10.0.0.1",
        forwarded=True,
        chain=("6.6.6.6", "203.0.113.9"),
    )


def test_unix_socket_peer_can_be_trusted() -> None:
    resolver = ClientAddressResolver(["unix", "10.0.0.0/8"])

    assert resolver.resolve(None, {"x-forwarded-for": "203.0.113.9"}).ip == "203.0.113.9"
    assert resolver.resolve(None, {"x-forwarded-for": "nonsense"}).ip is None
    assert resolver.resolve("testclient", {"x-forwarded-for": "203.0.113.9"}).ip is None


def test_no_trusted_proxies_never_believes_headers() -> None:
    result = ClientAddressResolver().resolve("127.0.0.1", {"x-forwarded-for": "203.0.113.9"})

    assert (result.ip, result.spoofed) == ("127.0.0.1", True)


@pytest.mark.parametrize(
    "entry",
    ["10.0.0.1/8", "not-an-ip", "10.0.0.0/33", ""],
    ids=["host bits set", "a name", "prefix too long", "empty"],
)
def test_bad_trusted_proxy_fails_at_start(entry: str) -> None:
    with pytest.raises(ValueError, match="trusted proxy"):
        ClientAddressResolver(["10.0.0.0/8", entry])


def test_ipv4_mapped_trusted_network_is_ipv4() -> None:
    resolver = ClientAddressResolver(["::ffff:10.0.0.0/104"])

    assert resolver.is_trusted(ipaddress.ip_address("10.200.0.1"))
    assert resolver.resolve("10.1.2.3", {"x-forwarded-for": "203.0.113.9"}).ip == "203.0.113.9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9:80 ", "203.0.113.9"),
        ('"[2001:db8::1]:80"', "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("unknown", None),
        ("203.0.113.9:", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("203.0.113.9:http", None),
        ("", None),
    ],
)
def test_parse_ip(text: str, expected: str | None) -> None:
    parsed = parse_ip(text)

    assert (str(parsed) if parsed is not None else None) == expected
