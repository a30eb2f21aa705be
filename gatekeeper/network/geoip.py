"""Country and network facts for an IP address, from a MaxMind-format (MMDB) database.

Any MaxMind DB works: a GeoLite2/GeoIP2 City or Country database, an ASN or Anonymous-IP
database, a merge of those, or the small database gatekeeper writes from a YAML file
(:func:`gatekeeper.network.build_database`). These GeoIP2 fields are read; anything else in the
record is ignored, and an absent field is ``None`` (or ``False`` for a flag):

==================  ================================================================
fact                fields read (first present wins)
==================  ================================================================
country             ``country.iso_code``
registered_country  ``registered_country.iso_code``
asn                 ``autonomous_system_number``, ``traits.autonomous_system_number``
as_org              ``autonomous_system_organization``,
                    ``traits.autonomous_system_organization``
is_hosting          ``traits.is_hosting_provider``, ``is_hosting_provider``
is_proxy            any of ``is_anonymous_proxy``, ``is_anonymous``, ``is_public_proxy``,
                    ``is_anonymous_vpn``, ``is_residential_proxy``, ``is_tor_exit_node``,
                    under ``traits`` or at the top level
==================  ================================================================

Top-level names are how the ASN and Anonymous-IP databases lay them out; ``traits.*`` is how the
City, Country, Enterprise and Insights databases do.

The database is memory-mapped (libmaxminddb's C reader when installed), so a lookup is a short
walk of a mapped tree and never blocks the event loop on I/O; an LRU cache in front makes
repeated clients cheaper still.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

from gatekeeper.errors import ConfigurationError

from .address import IPAddress, parse_ip

_PROXY_FLAGS = (
    "is_anonymous_proxy",
    "is_anonymous",
    "is_public_proxy",
    "is_anonymous_vpn",
    "is_residential_proxy",
    "is_tor_exit_node",
)


class GeoDatabaseError(ConfigurationError):
    """A GeoIP database (or the source it is built from) is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class GeoFacts:
    """What the database says about one address; empty when it says nothing."""

    country: str | None = None
    registered_country: str | None = None
    asn: int | None = None
    as_org: str | None = None
    is_hosting: bool = False
    is_proxy: bool = False

    @classmethod
    def from_record(cls, record: object) -> GeoFacts:
        """Read the GeoIP2 fields listed in this module's docstring out of a database record."""
        if not isinstance(record, Mapping):
            return EMPTY_FACTS
        traits = _mapping(record.get("traits"))
        asn = record.get("autonomous_system_number", traits.get("autonomous_system_number"))
        as_org = record.get(
            "autonomous_system_organization", traits.get("autonomous_system_organization")
        )
        hosting = traits.get("is_hosting_provider", record.get("is_hosting_provider"))
        return cls(
            country=_iso_code(record.get("country")),
            registered_country=_iso_code(record.get("registered_country")),
            asn=asn if isinstance(asn, int) and not isinstance(asn, bool) else None,
            as_org=as_org if isinstance(as_org, str) else None,
            is_hosting=hosting is True,
            is_proxy=any(traits.get(f) is True or record.get(f) is True for f in _PROXY_FLAGS),
        )


EMPTY_FACTS = GeoFacts()


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _iso_code(value: object) -> str | None:
    code = _mapping(value).get("iso_code")
    return code if isinstance(code, str) else None


class GeoLocator:
    """Look addresses up in a MaxMind-format database.

    The file is opened here, so a missing or corrupt database fails at start-up with
    :class:`GeoDatabaseError`, never at request time.

    Args:
        database_path: the ``.mmdb`` file.
        cache_size: how many distinct addresses to remember; 0 disables the cache.
        mode: a ``maxminddb.MODE_*`` constant; the default picks the C reader over a memory
            map when available.

    Raises:
        GeoDatabaseError: the file does not exist or is not a MaxMind DB.
    """

    def __init__(
        self,
        database_path: str | os.PathLike[str],
        *,
        cache_size: int = 16_384,
        mode: int = maxminddb.MODE_AUTO,
    ) -> None:
        self._path = Path(database_path)
        if not self._path.is_file():
            raise GeoDatabaseError(f"GeoIP database not found: {self._path}")
        try:
            self._reader = maxminddb.open_database(os.fspath(self._path), mode)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(f"cannot read GeoIP database {self._path}: {exc}") from exc
        metadata = self._reader.metadata()
        self._ipv4_only = metadata.ip_version == 4
        self._database_type = str(metadata.database_type)
        self._build_epoch = int(metadata.build_epoch)
        self._cached: Callable[[str | IPAddress], GeoFacts]
        self._cached = lru_cache(maxsize=cache_size)(self._lookup) if cache_size else self._lookup

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def database_type(self) -> str:
        """The database's own name for its type, e.g. ``GeoLite2-City``."""
        return self._database_type

    @property
    def build_epoch(self) -> int:
        """When the database says it was built (Unix seconds), for the start-up log."""
        return self._build_epoch

    def lookup(self, ip: str | IPAddress) -> GeoFacts:
        """Return the facts for ``ip``; empty facts when the database has no record for it.

        Raises:
            ValueError: ``ip`` is not an IP address.
        """
        return self._cached(ip)

    def _lookup(self, ip: str | IPAddress) -> GeoFacts:
        # Cached on the caller's value, so a repeat client costs one dict probe and no parse.
        address = parse_ip(ip if isinstance(ip, str) else str(ip))
        if address is None:
            raise ValueError(f"not an IP address: {ip!r}")
        if self._ipv4_only and isinstance(address, ipaddress.IPv6Address):
            return EMPTY_FACTS
        try:
            record = self._reader.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError):
            # A damaged record must not take the request down; the fact is simply unknown.
            return EMPTY_FACTS
        return GeoFacts.from_record(record)

    def close(self) -> None:
        """Release the memory map."""
        self._reader.close()

    def __enter__(self) -> GeoLocator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
