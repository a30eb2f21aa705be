"""The network stage: who is really connecting, and from where.

- :class:`ClientAddressResolver` finds the client address behind trusted proxies
  (X-Forwarded-For or RFC 7239 ``Forwarded``), refusing to believe anything a client wrote.
- :class:`GeoLocator` reads country, ASN and hosting/proxy flags from a MaxMind-format database,
  read into memory and verified at load and on every reload (a damaged one is refused).
- :func:`build_database` and :func:`ensure_database` write such a database from a YAML file.
- :func:`locate` combines both into the policy input's ``network`` section.

Nothing here decides anything; the facts go to the policy.
"""

from .address import (
    FORWARDED,
    UNIX_SOCKET,
    X_FORWARDED_FOR,
    ClientAddress,
    ClientAddressResolver,
    parse_ip,
)
from .builder import GeoSource, SourceNetwork, build_database, ensure_database, load_source
from .facts import EMPTY_FACTS, LOOKUP_FAILED, GeoDatabaseError, GeoFacts
from .geoip import GeoLocator
from .locate import UNKNOWN_CLIENT_IP, locate

__all__ = [
    "EMPTY_FACTS",
    "FORWARDED",
    "LOOKUP_FAILED",
    "UNIX_SOCKET",
    "UNKNOWN_CLIENT_IP",
    "X_FORWARDED_FOR",
    "ClientAddress",
    "ClientAddressResolver",
    "GeoDatabaseError",
    "GeoFacts",
    "GeoLocator",
    "GeoSource",
    "SourceNetwork",
    "build_database",
    "ensure_database",
    "load_source",
    "locate",
    "parse_ip",
]
