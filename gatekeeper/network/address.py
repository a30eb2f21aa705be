"""The client's IP address, behind zero or more trusted reverse proxies.

A forwarding header is only ever a claim. gatekeeper believes the part of it that was written by
proxies it trusts and nothing else:

- Headers are honoured only when the direct peer (the TCP connection's address) is a trusted
  proxy. A client that connects directly can send any header it likes; it is ignored, and the
  result is flagged ``spoofed`` so the caller can log it.
- Each proxy *appends* the address it received the connection from. So the header is walked from
  the right, skipping trusted hops, and the first untrusted address is the client. Everything to
  its left was written by the client itself (or proxies nobody vouches for) and is never used.
- If every hop is trusted, the left-most hop is the client (an internal caller going through the
  load balancer).

Malformed hops (garbage, ``unknown``, RFC 7239 obfuscated identifiers, an element without
``for=``) are the one judgment call. A client cannot place text to the right of its own address,
so a malformed hop the walk reaches was written or passed on by a trusted proxy. The walk stops
there and the request is attributed to the last trusted address it saw (the hop to the right of
the malformed one, or the peer), flagged ``malformed``. The text itself never becomes the client
address. Ports (``1.2.3.4:80``, ``[2001:db8::1]:443``), brackets and IPv4-mapped IPv6
(``::ffff:1.2.3.4``) are not malformed; they are normalised. Empty list elements are skipped, as
RFC 9110's list syntax asks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
HeaderValue = str | bytes
Headers = Mapping[str, str] | Iterable[tuple[HeaderValue, HeaderValue]]

#: ``trusted_proxies`` entry that trusts a peer without an IP address (a Unix-domain socket).
UNIX_SOCKET = "unix"

#: The header X-Forwarded-For, the de-facto standard and the default.
X_FORWARDED_FOR = "x-forwarded-for"
#: The RFC 7239 header; only its ``for=`` parameter is read.
FORWARDED = "forwarded"
#: Forwarding headers up to this long (a chain of several proxies) have their result cached.
_CACHED_HEADER_CHARS = 256


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """Where a request came from, as far as gatekeeper can vouch for it.

    Attributes:
        ip: the client's address in canonical form (IPv4-mapped IPv6 becomes IPv4), or ``None``
            when no IP address is known (a Unix socket or an in-process test transport, with no
            trusted forwarding header).
        peer_ip: the direct peer as given by the server, canonical when it is an IP address.
        forwarded: ``ip`` was taken from a forwarding header rather than the peer.
        chain: the hops of the honoured forwarding header, left to right, as sent (stripped);
            empty when no header was honoured.
        spoofed: a forwarding header arrived from a peer that is not a trusted proxy and was
            ignored. Harmless for the result, worth a log line.
        malformed: the walk met a hop it could not read and fell back to the last trusted
            address. Points at a misconfigured proxy chain.
    """

    ip: str | None
    peer_ip: str | None
    forwarded: bool = False
    chain: tuple[str, ...] = ()
    spoofed: bool = False
    malformed: bool = False


# Parsing dominates resolve(); the same proxies and clients come back again and again. Values are
# client-controlled, so the cache is bounded: flooding it only costs the parse it would save.
@lru_cache(maxsize=8192)
def parse_ip(text: str) -> IPAddress | None:
    """Read one address as proxies write it; ``None`` when it is not an IP address.

    Accepts ``1.2.3.4``, ``1.2.3.4:8080``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:8080``, optionally in double quotes (RFC 7239). IPv4-mapped IPv6 is
    returned as IPv4 so that one client has one address whichever stack accepted it.
    """
    value = text.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1].strip()
    host = value
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not _is_port_suffix(rest):
            return None
        if ":" not in host:
            # Brackets are only for IPv6; "[1.2.3.4]" is nobody's syntax.
            return None
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
        if not _is_port_suffix(":" + port):
            return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return _unmap(address)


def _is_port_suffix(text: str) -> bool:
    digits = text[1:]
    return text.startswith(":") and digits.isascii() and digits.isdigit() and int(digits) <= 65535


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_network(network: IPNetwork) -> IPNetwork:
    """Return ``network`` with IPv4-mapped IPv6 (``::ffff:10.0.0.0/104``) rewritten as IPv4."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _parse_trusted(entry: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(entry.strip(), strict=True)
    except ValueError as exc:
        # A typo here silently widens or narrows who may speak for clients: refuse at start-up.
        raise ValueError(f"trusted proxy {entry!r} is not an IP address or CIDR: {exc}") from None
    return canonical_network(network)


class ClientAddressResolver:
    """Resolve the client address from the peer and forwarding headers.

    Args:
        trusted_proxies: the proxies whose forwarding headers are believed: CIDRs or single
            addresses, IPv4 or IPv6, plus ``"unix"`` to trust a peer without an IP address.
            Empty (the default) means headers are never believed.
        header: which forwarding header the trusted proxies write: ``"x-forwarded-for"``,
            ``"forwarded"`` (RFC 7239, ``for=`` parameters) or any single-purpose header with a
            comma-separated list, such as ``"cf-connecting-ip"``. Exactly one is read: a proxy
            that writes one header passes the others through from the client untouched.

    Raises:
        ValueError: an entry of ``trusted_proxies`` is not an address or CIDR.
    """

    def __init__(
        self, trusted_proxies: Sequence[str] = (), *, header: str = X_FORWARDED_FOR
    ) -> None:
        entries = [trusted_proxies] if isinstance(trusted_proxies, str) else trusted_proxies
        self._trust_unix = any(e.strip().lower() == UNIX_SOCKET for e in entries)
        networks = [_parse_trusted(e) for e in entries if e.strip().lower() != UNIX_SOCKET]
        # Split by version: membership tests across versions are always false anyway.
        self._v4 = tuple(n for n in networks if isinstance(n, ipaddress.IPv4Network))
        self._v6 = tuple(n for n in networks if isinstance(n, ipaddress.IPv6Network))
        self._header = header.strip().lower()
        self._header_bytes = self._header.encode("latin-1")
        self._rfc7239 = self._header == FORWARDED
        # The same peers send the same forwarding chains request after request: resolving one
        # (parsing hops, network membership tests, building the result) costs about 5 µs, a
        # cache hit under 1 µs. Keys are client-controlled: the cache is bounded in entries,
        # and headers longer than a few proxies write are resolved without it.
        self._resolved = lru_cache(maxsize=8192)(self._resolve)

    @property
    def header(self) -> str:
        """The forwarding header this resolver reads (lower case)."""
        return self._header

    def is_trusted(self, address: IPAddress) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        address = _unmap(address)
        if isinstance(address, ipaddress.IPv4Address):
            return any(address in n for n in self._v4)
        return any(address in n for n in self._v6)

    def resolve(self, peer_ip: str | None, headers: Headers) -> ClientAddress:
        """Return the client address for a request.

        Args:
            peer_ip: the direct peer's host, e.g. ``scope["client"][0]``; ``None`` when the
                server reports none (Unix socket).
            headers: the request headers, as a mapping or as ``(name, value)`` pairs of ``str``
                or ``bytes`` (ASGI's ``scope["headers"]`` works as is). Repeated header lines
                are joined in order.
        """
        raw = self._header_value(headers)
        if raw is not None and len(raw) > _CACHED_HEADER_CHARS:
            return self._resolve(peer_ip, raw)
        return self._resolved(peer_ip, raw)

    def _resolve(self, peer_ip: str | None, raw: str | None) -> ClientAddress:
        """``resolve`` for the peer and the joined forwarding header (``None``: no header)."""
        peer = parse_ip(peer_ip) if peer_ip else None
        peer_text = str(peer) if peer is not None else peer_ip
        # A peer that is not an IP address (a Unix socket, or Starlette's "testclient") is only
        # trusted when it is absent altogether and "unix" was listed.
        trusted = self.is_trusted(peer) if peer is not None else self._trust_unix and not peer_ip
        if not trusted:
            return ClientAddress(
                ip=str(peer) if peer is not None else None,
                peer_ip=peer_text,
                spoofed=raw is not None,
            )
        hops = self._split(raw) if raw is not None else []
        if not hops:
            return ClientAddress(ip=str(peer) if peer is not None else None, peer_ip=peer_text)
        return self._walk(peer, peer_text, hops)

    def _walk(
        self, peer: IPAddress | None, peer_text: str | None, hops: list[str]
    ) -> ClientAddress:
        chain = tuple(hops)
        last_trusted: IPAddress | None = peer
        from_header = False
        for index in range(len(hops) - 1, -1, -1):
            address = self._hop_address(hops[index])
            if address is None:
                return ClientAddress(
                    ip=str(last_trusted) if last_trusted is not None else None,
                    peer_ip=peer_text,
                    forwarded=from_header,
                    chain=chain,
                    malformed=True,
                )
            if not self.is_trusted(address) or index == 0:
                return ClientAddress(
                    ip=str(address), peer_ip=peer_text, forwarded=True, chain=chain
                )
            last_trusted, from_header = address, True
        raise AssertionError("unreachable: the loop returns at index 0")  # pragma: no cover

    def _header_value(self, headers: Headers) -> str | None:
        items: Iterable[tuple[HeaderValue, HeaderValue]]
        items = headers.items() if isinstance(headers, Mapping) else headers
        values: list[str] = []
        for name, value in items:
            # ASGI header names arrive as lower-case bytes: compare them without decoding.
            if isinstance(name, bytes):
                wanted = name == self._header_bytes or name.lower() == self._header_bytes
            else:
                wanted = name.lower() == self._header
            if wanted:
                values.append(value.decode("latin-1") if isinstance(value, bytes) else value)
        return ", ".join(values) if values else None

    def _split(self, raw: str) -> list[str]:
        # A bare split, even for RFC 7239 quoted strings: honouring quotes would let a client's
        # unbalanced '"' swallow the hops that trusted proxies appended after it. No for= value
        # (address, port, "unknown", obfuscated token) can contain a comma or a semicolon.
        return [e.strip() for e in raw.split(",") if e.strip()]

    def _hop_address(self, hop: str) -> IPAddress | None:
        if not self._rfc7239:
            return parse_ip(hop)
        for pair in hop.split(";"):
            name, sep, value = pair.partition("=")
            if sep and name.strip().lower() == "for":
                return parse_ip(value)
        # An element without for= says nothing about the client: treat it like "unknown".
        return None
