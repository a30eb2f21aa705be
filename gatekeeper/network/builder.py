"""Write a small MaxMind-format database from a readable YAML source.

The source is either a list of networks or a mapping with ``networks`` and optional metadata::

    description: demo database        # optional
    database_type: gatekeeper-GeoIP2  # optional
    build_epoch: 1704067200           # optional; fixed so that equal sources give equal files
    networks:
      - network: 203.0.113.0/24       # IPv4 or IPv6 CIDR, or a single address
        country: US                   # ISO 3166-1 alpha-2; quote NO (Norway) in YAML
        registered_country: US        # defaults to country; null to leave it out
        asn: 64500
        as_org: Example Hosting
        is_hosting: true
        is_proxy: false

Records use the GeoIP2 field names that :class:`gatekeeper.network.GeoLocator` reads
(``country.iso_code``, ``registered_country.iso_code``, ``autonomous_system_number``,
``autonomous_system_organization``, ``traits.is_hosting_provider``,
``traits.is_anonymous_proxy``), so the same policies work against a real GeoLite2 database.
Networks may nest: the more specific one wins, whatever the order in the file. A network with no
facts at all carves an unknown hole out of a larger one.

Building happens at start-up or from the CLI, never on the request path.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path
from typing import Any

import mmdb_writer
import netaddr
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .address import IPNetwork, canonical_network
from .facts import GeoDatabaseError

_DEFAULT_TYPE = "gatekeeper-GeoIP2"
# Any fixed value keeps builds reproducible, but not 0: libmaxminddb (the C reader maxminddb
# prefers) refuses to open a database whose build_epoch is zero. 2024-01-01T00:00:00Z.
_DEFAULT_BUILD_EPOCH = 1_704_067_200


class SourceNetwork(BaseModel):
    """One network of a source file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: str
    country: str | None = None
    registered_country: str | None = None
    asn: int | None = Field(default=None, ge=0, le=2**32 - 1)
    as_org: str | None = None
    is_hosting: bool = False
    is_proxy: bool = False

    @field_validator("network")
    @classmethod
    def _valid_network(cls, value: str) -> str:
        try:
            return str(canonical_network(ipaddress.ip_network(value.strip(), strict=True)))
        except ValueError as exc:
            raise ValueError(f"not a network: {exc}") from None

    @field_validator("country", "registered_country", mode="before")
    @classmethod
    def _valid_country(cls, value: object) -> object:
        if isinstance(value, bool):
            # YAML 1.1 reads the bare words NO, YES, ON, OFF as booleans.
            raise ValueError("a country code must be a string: quote it (YAML reads NO as false)")
        if isinstance(value, str):
            code = value.strip().upper()
            if len(code) != 2 or not code.isascii() or not code.isalpha():
                raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 code")
            return code
        return value

    @property
    def ip_network(self) -> IPNetwork:
        """The network as an ``ipaddress`` object."""
        return ipaddress.ip_network(self.network)

    def record(self) -> dict[str, Any]:
        """The database record, in GeoIP2 layout; flags are stored only when true, like MaxMind."""
        registered = (
            self.registered_country
            if "registered_country" in self.model_fields_set
            else self.country
        )
        record: dict[str, Any] = {}
        if self.country is not None:
            record["country"] = {"iso_code": self.country}
        if registered is not None:
            record["registered_country"] = {"iso_code": registered}
        if self.asn is not None:
            record["autonomous_system_number"] = self.asn
        if self.as_org is not None:
            record["autonomous_system_organization"] = self.as_org
        traits: dict[str, Any] = {}
        if self.is_hosting:
            traits["is_hosting_provider"] = True
        if self.is_proxy:
            traits["is_anonymous_proxy"] = True
        if traits:
            record["traits"] = traits
        return record


class GeoSource(BaseModel):
    """A whole source file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = "gatekeeper GeoIP database"
    database_type: str = _DEFAULT_TYPE
    build_epoch: int = Field(default=_DEFAULT_BUILD_EPOCH, ge=1)
    networks: list[SourceNetwork]


def load_source(source: Path) -> GeoSource:
    """Read and validate a source file.

    Raises:
        GeoDatabaseError: the file is missing, is not YAML, or does not fit the schema; the
            message names the entry at fault.
    """
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise GeoDatabaseError(f"cannot read GeoIP source {source}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GeoDatabaseError(f"GeoIP source {source} is not valid YAML: {exc}") from exc
    if isinstance(data, list):
        data = {"networks": data}
    try:
        parsed = GeoSource.model_validate(data)
    except ValidationError as exc:
        raise GeoDatabaseError(f"GeoIP source {source} is invalid: {exc}") from exc
    seen: dict[IPNetwork, int] = {}
    for index, entry in enumerate(parsed.networks):
        first = seen.setdefault(entry.ip_network, index)
        if first != index:
            raise GeoDatabaseError(
                f"GeoIP source {source}: network {entry.network} is listed twice "
                f"(entries {first} and {index})"
            )
    return parsed


def _tree_position(network: IPNetwork) -> tuple[int, int]:
    # IPv4 lives at ::a.b.c.d/96+n in the IPv6 tree; order by depth there so that every
    # supernet is written before the subnets that override parts of it (the writer replaces
    # a whole subtree when a shorter prefix is inserted after a longer one).
    offset = 96 if network.version == 4 else 0
    return network.prefixlen + offset, int(network.network_address)


def build_database(source: Path, output: Path) -> int:
    """Write ``output`` (an ``.mmdb``) from the YAML ``source``; return the number of networks.

    The output is deterministic (equal sources give byte-identical files) and replaced
    atomically, so a process reading it never sees a torn file and concurrent builders cannot
    leave one.

    Raises:
        GeoDatabaseError: the source is missing or invalid, or the output cannot be written.
    """
    parsed = load_source(Path(source))
    writer = mmdb_writer.MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=parsed.database_type,
        languages=["en"],
        description=parsed.description,
        int_type="u32",
    )
    for entry in sorted(parsed.networks, key=lambda e: _tree_position(e.ip_network)):
        writer.insert_network(netaddr.IPSet([entry.network]), entry.record())
    # MMDBWriter stamps the wall clock into the metadata; writing the tree ourselves with our own
    # metadata is what makes the output reproducible.
    metadata = {
        "ip_version": 6,
        "database_type": parsed.database_type,
        "languages": ["en"],
        "binary_format_major_version": 2,
        "binary_format_minor_version": 0,
        "description": {"en": parsed.description},
        "build_epoch": parsed.build_epoch,
    }
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        os.close(fd)
    except OSError as exc:
        raise GeoDatabaseError(f"cannot write GeoIP database {output}: {exc.strerror}") from exc
    try:
        mmdb_writer.TreeWriter(writer.tree, metadata, int_type="u32").write(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, output)
    except OSError as exc:
        raise GeoDatabaseError(f"cannot write GeoIP database {output}: {exc.strerror}") from exc
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return len(parsed.networks)


def ensure_database(source: Path, output: Path | None = None) -> Path:
    """Build ``output`` from ``source`` if it is missing or older than the source; return it.

    ``output`` defaults to the source's path with the suffix ``.mmdb``. Meant for start-up (the
    demo calls it); several workers calling it at once is safe, since builds are deterministic
    and replace the file atomically.

    Raises:
        GeoDatabaseError: the source is missing or invalid, or the output cannot be written.
    """
    source = Path(source)
    output = Path(output) if output is not None else source.with_suffix(".mmdb")
    try:
        source_mtime = source.stat().st_mtime_ns
    except OSError as exc:
        raise GeoDatabaseError(f"GeoIP source not found: {source}") from exc
    try:
        stale = output.stat().st_mtime_ns < source_mtime
    except FileNotFoundError:
        stale = True
    if stale:
        build_database(source, output)
    return output
