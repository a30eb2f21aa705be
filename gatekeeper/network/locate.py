"""Turn a resolved client address and its GeoIP facts into the contract's ``Network``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gatekeeper.contract import Network

from .address import ClientAddress
from .facts import EMPTY_FACTS
from .geoip import GeoLocator

#: ``Network.client_ip`` when no address is known (RFC 7239's word for an undisclosed node).
UNKNOWN_CLIENT_IP = "unknown"


def locate(
    address: ClientAddress,
    geo: GeoLocator | None,
    jurisdiction_tags: Mapping[str, Sequence[str]] | None = None,
) -> Network:
    """Build the policy input's ``network`` section.

    Args:
        address: the output of :meth:`ClientAddressResolver.resolve`.
        geo: the GeoIP database, or ``None`` when none is configured (country and ASN are then
            unknown). A lookup that failed sets ``lookup_error``, which the policy refuses.
        jurisdiction_tags: tags per ISO country code, e.g. ``{"DE": ["eu", "gdpr"]}``; the
            client's ``country`` (not its registered country, which the policy sees on its own)
            selects them. The tags are data handed to the policy, not rules: what a tag means
            is decided in Rego.
    """
    facts = geo.lookup(address.ip) if geo is not None and address.ip is not None else EMPTY_FACTS
    tags: list[str] = []
    if jurisdiction_tags and facts.country is not None:
        tags = sorted(set(jurisdiction_tags.get(facts.country, ())))
    # Not validated: every value is of its field's type already (the address's strings and
    # flag, the tags of settings, and GeoFacts, which from_record reads with type checks).
    return _NETWORK.with_valid(
        client_ip=address.ip if address.ip is not None else UNKNOWN_CLIENT_IP,
        peer_ip=address.peer_ip,
        forwarded=address.forwarded,
        jurisdiction_tags=tags,
        **facts.as_dict(),
    )


#: What ``locate`` copies and fills in (every field).
_NETWORK = Network()
