"""Factories for the network tests: resolvers, source files and databases built in tmp dirs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mmdb_writer
import netaddr
import pytest
import yaml

from gatekeeper.network import ClientAddressResolver, GeoLocator, build_database

REPO = Path(__file__).resolve().parents[2]
DEMO_SOURCE = REPO / "examples" / "demo" / "geo" / "demo-geo.yaml"

#: The proxies every address test trusts: a private /8, one host, an IPv6 /48.
TRUSTED = ("10.0.0.0/8", "192.168.1.1", "2001:db8:ffff::/48")


@pytest.fixture
def make_resolver() -> Callable[..., ClientAddressResolver]:
    def make(
        trusted: Sequence[str] = TRUSTED, header: str = "x-forwarded-for"
    ) -> ClientAddressResolver:
        return ClientAddressResolver(trusted, header=header)

    return make


@pytest.fixture
def write_source(tmp_path: Path) -> Callable[..., Path]:
    """Write a YAML source (a list of networks, or a full mapping) and return its path."""

    def write(content: object, name: str = "geo.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("demo") / "demo-geo.mmdb"
    build_database(DEMO_SOURCE, output)
    return output


@pytest.fixture
def demo_geo(demo_db: Path) -> GeoLocator:
    return GeoLocator(demo_db)


@pytest.fixture
def raw_db(tmp_path: Path) -> Callable[..., Path]:
    """Write arbitrary records (as another vendor's database would lay them out)."""

    def write(records: Mapping[str, Any], ip_version: int = 6) -> Path:
        writer = mmdb_writer.MMDBWriter(
            ip_version=ip_version, ipv4_compatible=ip_version == 6, database_type="Test-DB"
        )
        for network, record in records.items():
            writer.insert_network(netaddr.IPSet([network]), record)
        path = tmp_path / f"raw-v{ip_version}.mmdb"
        writer.to_db_file(str(path))
        return path

    return write
