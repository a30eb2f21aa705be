"""From a resolved address to the policy input's ``network`` section."""

from __future__ import annotations

from gatekeeper.contract import Network
from gatekeeper.network import (
    UNKNOWN_CLIENT_IP,
    ClientAddress,
    ClientAddressResolver,
    GeoLocator,
    locate,
)

TAGS = {"KP": ["sanctioned", "embargo", "sanctioned"], "DE": ["eu", "gdpr"]}


def test_forwarded_client_is_located(demo_geo: GeoLocator) -> None:
    address = ClientAddressResolver(["127.0.0.0/8"]).resolve(
        "127.0.0.1", {"x-forwarded-for": "203.0.113.50"}
    )

    assert locate(address, demo_geo, TAGS) == Network(
        client_ip="203.0.113.50",
        peer_ip="127.0.0.1",
        forwarded=True,
        country="US",
        registered_country="US",
        asn=64500,
        as_org="Example Cloud Hosting LLC",
        is_hosting=True,
    )


def test_jurisdiction_tags_come_from_the_country_sorted_and_unique(demo_geo: GeoLocator) -> None:
    network = locate(ClientAddress(ip="198.51.100.9", peer_ip="198.51.100.9"), demo_geo, TAGS)

    assert (network.country, network.jurisdiction_tags) == ("KP", ["embargo", "sanctioned"])


def test_unknown_country_has_no_tags(demo_geo: GeoLocator) -> None:
    network = locate(ClientAddress(ip="100.64.0.1", peer_ip="100.64.0.1"), demo_geo, TAGS)

    assert (network.country, network.asn, network.jurisdiction_tags) == (None, None, [])


def test_without_a_database_only_the_address_is_known() -> None:
    network = locate(ClientAddress(ip="192.0.2.1", peer_ip="10.0.0.1", forwarded=True), None, TAGS)

    assert network == Network(client_ip="192.0.2.1", peer_ip="10.0.0.1", forwarded=True)


def test_no_address_at_all(demo_geo: GeoLocator) -> None:
    network = locate(ClientAddress(ip=None, peer_ip="testclient"), demo_geo)

    assert network == Network(client_ip=UNKNOWN_CLIENT_IP, peer_ip="testclient")


def test_every_field_is_set_and_no_list_is_shared(demo_geo: GeoLocator) -> None:
    """The network is a copy of one template with every field set: a field added to Network
    must be set there too, or every request would share the template's value."""
    first = locate(ClientAddress(ip="198.51.100.9", peer_ip="198.51.100.9"), demo_geo, TAGS)
    second = locate(ClientAddress(ip="198.51.100.9", peer_ip="198.51.100.9"), demo_geo, TAGS)
    assert first.model_fields_set == set(Network.model_fields)
    assert first == Network.model_validate(first.model_dump())
    assert first.jurisdiction_tags is not second.jurisdiction_tags
