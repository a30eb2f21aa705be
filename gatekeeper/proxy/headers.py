"""Header rewriting for the reverse proxy: hop-by-hop fields, forwarding, credentials.

RFC 9110 §7.6.1: a proxy removes ``Connection``, every field ``Connection`` names, and the
hop-by-hop fields ``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Transfer-Encoding`` and
``Upgrade``. ``Proxy-Authenticate`` / ``Proxy-Authorization`` address this hop only (§11.7), so
they go too. ``Host`` is the upstream's unless ``preserve_host`` is set. ``Content-Length`` is
kept: the body is forwarded byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
#: Content codings the response shaper can decode; a request never asks the upstream for others.
SHAPEABLE_CODINGS = frozenset({b"gzip", b"x-gzip", b"deflate", b"identity"})


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The field names listed in every ``Connection`` header (lower case)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(named)


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]], *also: bytes) -> Headers:
    """``headers`` without hop-by-hop fields, the fields ``Connection`` names, and ``also``."""
    pairs = [(name.lower(), value) for name, value in headers]
    drop = HOP_BY_HOP | connection_tokens(pairs) | frozenset(also)
    return [(name, value) for name, value in pairs if name not in drop]


def shapeable_accept_encoding(value: bytes) -> bytes:
    """``Accept-Encoding`` limited to codings the shaper decodes (br/zstd would be unshapeable)."""
    kept = [
        item.strip()
        for item in value.split(b",")
        if item.split(b";")[0].strip().lower() in SHAPEABLE_CODINGS
    ]
    return b", ".join(kept) if kept else b"identity"


@dataclass(frozen=True, slots=True)
class Hop:
    """What this hop saw of the request: the peer, the scheme and the Host it was sent to."""

    peer: str | None
    scheme: str
    host: bytes | None
    peer_trusted: bool


def add_forwarding(headers: Headers, hop: Hop, style: str) -> None:
    """Pass the client's address on, in place.

    ``X-Forwarded-For`` and ``Forwarded`` get this hop's peer appended (the upstream reads them
    from the right, as gatekeeper does). ``X-Forwarded-Proto``/``-Host`` are kept when the peer
    is a trusted proxy that set them, and set to what this hop saw otherwise.
    """
    if style == "none":
        return
    if style in ("x-forwarded", "both"):
        _append(headers, b"x-forwarded-for", (hop.peer or "unknown").encode("latin-1"))
        _set_unless_trusted(headers, b"x-forwarded-proto", hop.scheme.encode(), hop.peer_trusted)
        if hop.host is not None:
            _set_unless_trusted(headers, b"x-forwarded-host", hop.host, hop.peer_trusted)
    if style in ("forwarded", "both"):
        element = f"for={_node(hop.peer)};proto={hop.scheme}"
        if hop.host is not None:
            element += f';host="{hop.host.decode("latin-1")}"'
        _append(headers, b"forwarded", element.encode("latin-1"))


def _node(peer: str | None) -> str:
    if peer is None:
        return "unknown"
    return f'"[{peer}]"' if ":" in peer else peer  # RFC 7239 §6: IPv6 quoted, in brackets


def _append(headers: Headers, name: bytes, value: bytes) -> None:
    existing = [v for k, v in headers if k == name]
    headers[:] = [(k, v) for k, v in headers if k != name]
    headers.append((name, b", ".join([*existing, value])))


def _set_unless_trusted(headers: Headers, name: bytes, value: bytes, trusted: bool) -> None:
    if trusted and any(k == name for k, _ in headers):
        return
    headers[:] = [(k, v) for k, v in headers if k != name]
    headers.append((name, value))


def replace_credentials(headers: Headers, api_key: str) -> None:
    """Swap the client's credentials for the upstream's key, in place.

    The key goes where the client put its own (``Authorization: Bearer`` for OpenAI clients,
    ``x-api-key`` for Anthropic ones); ``Authorization`` when the client sent neither.
    """
    had_bearer = any(k == b"authorization" for k, _ in headers)
    had_x_api_key = any(k == b"x-api-key" for k, _ in headers)
    headers[:] = [(k, v) for k, v in headers if k not in (b"authorization", b"x-api-key")]
    key = api_key.encode("latin-1")
    if had_x_api_key:
        headers.append((b"x-api-key", key))
    if had_bearer or not had_x_api_key:
        headers.append((b"authorization", b"Bearer " + key))
