"""Invariants of the client address resolver, whatever the headers say."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.network import ClientAddressResolver, parse_ip

from .conftest import TRUSTED

_TRUSTED_NETS = [ipaddress.ip_network(n) for n in TRUSTED]


_untrusted_ips = st.ip_addresses().filter(
    lambda a: (
        not any(a.version == n.version and a in n for n in _TRUSTED_NETS)
        and not (a.version == 6 and a.ipv4_mapped is not None)
    )
)
_trusted_hops = st.one_of(
    st.ip_addresses(network="10.0.0.0/8"), st.ip_addresses(network="2001:db8:ffff::/48")
)
_header_lists = st.lists(
    st.tuples(st.sampled_from(["X-Forwarded-For", "Forwarded", "X-Real-IP", "Host"]), st.text()),
    max_size=4,
)


@given(peer=_untrusted_ips, headers=_header_lists)
def test_untrusted_peer_is_always_the_client(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address, headers: list[tuple[str, str]]
) -> None:
    for header in ("x-forwarded-for", "forwarded"):
        result = ClientAddressResolver(TRUSTED, header=header).resolve(str(peer), headers)

        assert (result.ip, result.forwarded, result.chain) == (str(peer), False, ())


@given(
    spoof=st.text(),
    client=_untrusted_ips,
    hops=st.lists(_trusted_hops, max_size=4),
    peer=_trusted_hops,
)
def test_client_cannot_write_past_its_own_address(
    spoof: str,
    client: ipaddress.IPv4Address | ipaddress.IPv6Address,
    hops: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    # The client controls its own header line; each trusted proxy appends what it saw.
    appended = ", ".join(str(h) for h in [client, *hops])
    headers = [("X-Forwarded-For", spoof), ("X-Forwarded-For", appended)]

    result = ClientAddressResolver(TRUSTED).resolve(str(peer), headers)

    assert (result.ip, result.forwarded, result.malformed) == (str(client), True, False)


@given(peer=_trusted_hops, value=st.text())
def test_result_is_always_a_canonical_address(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address, value: str
) -> None:
    result = ClientAddressResolver(TRUSTED).resolve(str(peer), {"X-Forwarded-For": value})

    hops = {str(a) for a in map(parse_ip, value.split(",")) if a is not None}
    assert result.ip is not None
    assert str(ipaddress.ip_address(result.ip)) == result.ip
    assert result.ip in {str(peer)} | hops


@given(address=st.ip_addresses(), port=st.integers(0, 65535))
def test_parse_ip_reads_every_written_form(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    expected = parse_ip(str(address))
    written = (
        [str(address), f"{address}:{port}"]
        if address.version == 4
        else [str(address), f"[{address}]", f"[{address}]:{port}", f'"[{address}]:{port}"']
    )

    assert expected is not None
    assert all(parse_ip(form) == expected for form in written)


@given(
    requests=st.lists(
        st.tuples(st.one_of(_trusted_hops, _untrusted_ips).map(str), _header_lists),
        max_size=8,
    )
)
def test_a_resolver_answers_each_request_as_a_new_one_would(
    requests: list[tuple[str, list[tuple[str, str]]]],
) -> None:
    # Results are cached by peer and forwarding header: a cached answer is never another's.
    shared = ClientAddressResolver(TRUSTED)
    for peer, headers in requests * 2:
        assert shared.resolve(peer, headers) == ClientAddressResolver(TRUSTED).resolve(
            peer, headers
        )


def test_a_long_forwarding_chain_is_resolved_like_a_short_one() -> None:
    # Past a few hundred characters results are not cached (client-made keys stay small).
    hops = ", ".join(["203.0.113.9", *(f"10.0.{i}.1" for i in range(40))])
    resolver = ClientAddressResolver(TRUSTED)
    for _ in range(2):
        result = resolver.resolve("10.0.0.1", [("x-forwarded-for", hops)])
        assert (result.ip, result.forwarded, len(result.chain)) == ("203.0.113.9", True, 41)
    assert resolver._resolved.cache_info().currsize == 0
