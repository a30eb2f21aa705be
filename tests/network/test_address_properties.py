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
