"""GeoIP lookups: the demo database, other vendors' layouts, and failures at start-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper.errors import ConfigurationError
from gatekeeper.network import EMPTY_FACTS, GeoDatabaseError, GeoFacts, GeoLocator

HOSTING = GeoFacts(
    country="US",
    registered_country="US",
    asn=64500,
    as_org="Example Cloud Hosting LLC",
    is_hosting=True,
)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.0.0.1", GeoFacts(country="US", registered_country="US")),
        ("127.255.255.254", GeoFacts(country="US", registered_country="US")),
        ("::1", GeoFacts(country="US", registered_country="US")),
        ("203.0.113.0", HOSTING),
        ("203.0.113.255", HOSTING),
        ("::ffff:203.0.113.9", HOSTING),
        (
            "192.0.2.1",
            GeoFacts(
                country="DE", registered_country="DE", asn=64501, as_org="Beispiel Breitband GmbH"
            ),
        ),
        (
            "198.51.100.77",
            GeoFacts(
                country="KP",
                registered_country="KP",
                asn=64502,
                as_org="Example Star Joint Venture",
            ),
        ),
        ("100.64.0.1", EMPTY_FACTS),
        ("100.127.255.254", EMPTY_FACTS),
        ("203.0.114.1", EMPTY_FACTS),
        ("2001:db8::1", EMPTY_FACTS),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_demo_ranges(demo_geo: GeoLocator, ip: str, expected: GeoFacts) -> None:
    assert demo_geo.lookup(ip) == expected


def test_demo_metadata(demo_geo: GeoLocator) -> None:
    assert (demo_geo.database_type, demo_geo.build_epoch) == ("gatekeeper-GeoIP2", 1704067200)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param(
            {
                "country": {"iso_code": "FR", "names": {"en": "France"}, "geoname_id": 3017382},
                "registered_country": {"iso_code": "NL"},
                "traits": {"is_anonymous_proxy": True},
                "city": {"names": {"en": "Paris"}},
            },
            GeoFacts(country="FR", registered_country="NL", is_proxy=True),
            id="GeoLite2-City layout",
        ),
        pytest.param(
            {"autonomous_system_number": 64510, "autonomous_system_organization": "ASN Co"},
            GeoFacts(asn=64510, as_org="ASN Co"),
            id="GeoLite2-ASN layout",
        ),
        pytest.param(
            {"is_anonymous": True, "is_hosting_provider": True, "is_tor_exit_node": True},
            GeoFacts(is_hosting=True, is_proxy=True),
            id="Anonymous-IP layout",
        ),
        pytest.param(
            {
                "country": {"iso_code": "JP"},
                "traits": {
                    "autonomous_system_number": 64511,
                    "autonomous_system_organization": "Insights Co",
                    "is_hosting_provider": True,
                    "is_residential_proxy": True,
                },
            },
            GeoFacts(country="JP", asn=64511, as_org="Insights Co", is_hosting=True, is_proxy=True),
            id="Enterprise/Insights traits layout",
        ),
        pytest.param(
            {
                "country": "US",
                "autonomous_system_number": "64500",
                "traits": {"is_hosting_provider": 1},
            },
            EMPTY_FACTS,
            id="wrong types are ignored",
        ),
    ],
)
def test_other_database_layouts(
    raw_db: Callable[..., Path], record: dict[str, object], expected: GeoFacts
) -> None:
    with GeoLocator(raw_db({"192.0.2.0/24": record})) as geo:
        assert geo.lookup("192.0.2.10") == expected


def test_ipv6_lookup_in_ipv4_only_database_is_empty(raw_db: Callable[..., Path]) -> None:
    with GeoLocator(raw_db({"192.0.2.0/24": {"country": {"iso_code": "DE"}}}, ip_version=4)) as geo:
        assert geo.lookup("192.0.2.1").country == "DE"
        assert geo.lookup("2001:db8::1") == EMPTY_FACTS


def test_missing_database_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match="not found") as caught:
        GeoLocator(tmp_path / "absent.mmdb")

    assert isinstance(caught.value, ConfigurationError)


def test_corrupt_database_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mmdb"
    path.write_bytes(b"not a maxmind database" * 100)

    with pytest.raises(GeoDatabaseError, match="cannot read"):
        GeoLocator(path)


@pytest.mark.parametrize("ip", ["nonsense", "", "203.0.113.9/24"])
def test_lookup_rejects_non_addresses(demo_geo: GeoLocator, ip: str) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        demo_geo.lookup(ip)


@pytest.mark.parametrize("cache_size", [0, 2, 1024], ids=["uncached", "evicting", "cached"])
def test_repeated_lookups_agree(demo_db: Path, cache_size: int) -> None:
    with GeoLocator(demo_db, cache_size=cache_size) as geo:
        ips = ["203.0.113.9", "192.0.2.1", "198.51.100.1", "203.0.113.9", "100.64.0.1"] * 3
        first = [geo.lookup(ip) for ip in ips]

        assert [geo.lookup(ip) for ip in ips] == first
