"""Writing databases from YAML: reproducible, nested networks, clear errors, rebuild on change."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper.network import GeoDatabaseError, GeoLocator, build_database, ensure_database

from .conftest import DEMO_SOURCE

Writer = Callable[..., Path]


def test_build_is_reproducible(tmp_path: Path) -> None:
    build_database(DEMO_SOURCE, tmp_path / "a.mmdb")
    build_database(DEMO_SOURCE, tmp_path / "b.mmdb")

    assert (tmp_path / "a.mmdb").read_bytes() == (tmp_path / "b.mmdb").read_bytes()


def test_build_reports_networks_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    output = tmp_path / "out" / "geo.mmdb"

    assert build_database(DEMO_SOURCE, output) == 5
    assert sorted(p.name for p in output.parent.iterdir()) == ["geo.mmdb"]


NESTED = [
    {"network": "10.1.2.0/24", "country": "FR"},
    {"network": "10.0.0.0/8", "country": "DE", "asn": 64500},
    {"network": "10.1.2.3", "country": "IT"},
    {"network": "10.9.0.0/16"},
    {"network": "2001:db8::/32", "country": "NL"},
    {"network": "::ffff:172.16.0.0/108", "country": "SE"},
]


@pytest.mark.parametrize("order", [NESTED, NESTED[::-1]], ids=["as listed", "reversed"])
@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("10.200.0.1", "DE"),
        ("10.1.2.4", "FR"),
        ("10.1.2.3", "IT"),
        ("10.9.1.1", None),
        ("2001:db8:1::1", "NL"),
        ("172.16.5.5", "SE"),
    ],
)
def test_the_more_specific_network_wins(
    write_source: Writer,
    tmp_path: Path,
    order: list[dict[str, object]],
    ip: str,
    country: str | None,
) -> None:
    output = tmp_path / "nested.mmdb"
    build_database(write_source(order), output)

    with GeoLocator(output) as geo:
        assert geo.lookup(ip).country == country


def test_same_content_in_any_order_gives_the_same_file(
    write_source: Writer, tmp_path: Path
) -> None:
    build_database(write_source(NESTED, "a.yaml"), tmp_path / "a.mmdb")
    build_database(write_source(NESTED[::-1], "b.yaml"), tmp_path / "b.mmdb")

    assert (tmp_path / "a.mmdb").read_bytes() == (tmp_path / "b.mmdb").read_bytes()


@pytest.mark.parametrize(
    ("entry", "registered"),
    [
        ({"network": "192.0.2.0/24", "country": "de"}, "DE"),
        ({"network": "192.0.2.0/24", "country": "DE", "registered_country": "AT"}, "AT"),
        ({"network": "192.0.2.0/24", "country": "DE", "registered_country": None}, None),
    ],
    ids=["defaults to country", "explicit", "explicitly absent"],
)
def test_registered_country(
    write_source: Writer, tmp_path: Path, entry: dict[str, object], registered: str | None
) -> None:
    build_database(write_source([entry]), tmp_path / "geo.mmdb")

    with GeoLocator(tmp_path / "geo.mmdb") as geo:
        facts = geo.lookup("192.0.2.1")
    assert (facts.country, facts.registered_country) == ("DE", registered)


def test_proxy_flag_and_mapping_form(write_source: Writer, tmp_path: Path) -> None:
    source = write_source(
        {
            "description": "test",
            "database_type": "Test-Type",
            "build_epoch": 1,
            "networks": [{"network": "192.0.2.0/25", "is_proxy": True, "asn": 4_200_000_000}],
        }
    )
    build_database(source, tmp_path / "geo.mmdb")

    with GeoLocator(tmp_path / "geo.mmdb") as geo:
        assert (geo.database_type, geo.build_epoch) == ("Test-Type", 1)
        facts = geo.lookup("192.0.2.1")
    assert (facts.is_proxy, facts.is_hosting, facts.asn) == (True, False, 4_200_000_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- network: 192.0.2.0/24\n  country: NO\n", "quote it"),
        ("- network: 192.0.2.0/24\n  country: USA\n", "alpha-2"),
        ("- network: 192.0.2.1/24\n", "not a network"),
        ("- network: 192.0.2.0/24\n  contry: US\n", "contry"),
        ("- network: 192.0.2.0/24\n- network: 192.0.2.0/24\n", "listed twice"),
        ("- network: 192.0.2.0/24\n  asn: -1\n", "asn"),
        ("networks: [\n", "not valid YAML"),
        ("just a string\n", "invalid"),
    ],
    ids=[
        "Norway read as false",
        "three-letter code",
        "host bits set",
        "misspelt key",
        "duplicate network",
        "negative ASN",
        "broken YAML",
        "not a list",
    ],
)
def test_invalid_source_names_the_problem(
    write_source: Writer, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(GeoDatabaseError, match=message):
        build_database(write_source(text), tmp_path / "geo.mmdb")
    assert not (tmp_path / "geo.mmdb").exists()


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match="cannot read GeoIP source"):
        build_database(tmp_path / "absent.yaml", tmp_path / "geo.mmdb")
    with pytest.raises(GeoDatabaseError, match="not found"):
        ensure_database(tmp_path / "absent.yaml")


def _age(path: Path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 1_000_000_000))


def test_ensure_builds_when_missing(write_source: Writer) -> None:
    source = write_source([{"network": "192.0.2.0/24", "country": "DE"}], "demo-geo.yaml")

    output = ensure_database(source)

    assert output == source.with_name("demo-geo.mmdb")
    with GeoLocator(output) as geo:
        assert geo.lookup("192.0.2.1").country == "DE"


def test_ensure_keeps_an_up_to_date_database(write_source: Writer, tmp_path: Path) -> None:
    source = write_source([{"network": "192.0.2.0/24", "country": "DE"}])
    output = tmp_path / "geo.mmdb"
    ensure_database(source, output)
    _age(source, 60)
    before = output.stat().st_mtime_ns

    assert ensure_database(source, output) == output
    assert output.stat().st_mtime_ns == before


def test_ensure_rebuilds_when_source_is_newer(write_source: Writer, tmp_path: Path) -> None:
    output = tmp_path / "geo.mmdb"
    ensure_database(write_source([{"network": "192.0.2.0/24", "country": "DE"}]), output)
    _age(output, 60)
    source = write_source([{"network": "192.0.2.0/24", "country": "FR"}])

    ensure_database(source, output)

    with GeoLocator(output) as geo:
        assert geo.lookup("192.0.2.1").country == "FR"


def test_rebuild_under_an_open_reader_keeps_its_view(write_source: Writer, tmp_path: Path) -> None:
    output = tmp_path / "geo.mmdb"
    build_database(write_source([{"network": "192.0.2.0/24", "country": "DE"}]), output)

    with GeoLocator(output, cache_size=0) as old:
        build_database(write_source([{"network": "192.0.2.0/24", "country": "FR"}]), output)

        assert old.lookup("192.0.2.1").country == "DE"
        with GeoLocator(output) as new:
            assert new.lookup("192.0.2.1").country == "FR"
