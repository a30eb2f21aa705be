"""What a GeoIP database says about one address, read out of a MaxMind-format record.

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

``lookup_error`` is not read from the record: it says that the lookup itself failed (a damaged
record), which is not the same as an address the database does not list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from gatekeeper.errors import ConfigurationError

_PROXY_FLAGS = (
    "is_anonymous_proxy",
    "is_anonymous",
    "is_public_proxy",
    "is_anonymous_vpn",
    "is_residential_proxy",
    "is_tor_exit_node",
)


class GeoDatabaseError(ConfigurationError):
    """A GeoIP database (or the source it is built from) is missing, unreadable or damaged.

    ``reason`` says what is wrong without naming the file or any address, so that it can be
    shown by ``/readyz``; the message (for the log and start-up errors) names the file.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else "the database cannot be used"


@dataclass(frozen=True, slots=True)
class GeoFacts:
    """What the database says about one address; empty when it says nothing.

    ``lookup_error`` is true when the database could not answer at all (the policy then sees
    ``network.lookup_error``), as opposed to having no record for the address.
    """

    country: str | None = None
    registered_country: str | None = None
    asn: int | None = None
    as_org: str | None = None
    is_hosting: bool = False
    is_proxy: bool = False
    lookup_error: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The facts by name (the names ``contract.Network`` gives them)."""
        return {name: getattr(self, name) for name in _FACT_NAMES}

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


_FACT_NAMES = tuple(f.name for f in fields(GeoFacts))

#: No record for the address: every fact unknown.
EMPTY_FACTS = GeoFacts()
#: The lookup failed: every fact unknown, and the policy told so.
LOOKUP_FAILED = GeoFacts(lookup_error=True)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _iso_code(value: object) -> str | None:
    code = _mapping(value).get("iso_code")
    return code if isinstance(code, str) else None
