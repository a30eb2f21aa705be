"""Load a MaxMind-format database so that nothing later done to the file can hurt the process.

A database file is never trusted and never memory-mapped from disk (a mapped file that shrinks
kills the process with SIGBUS: truncating it, or ``cp`` over it, while it is served):

1. The file is read into memory with ``read()``; its size and mtime must be the same before and
   after, or it was being written meanwhile and is refused (a later look reads it again).
2. The bytes are checked (:func:`verify`): the metadata (binary format 2, IPv4 or IPv6, a record
   size of 24, 28 or 32 bits, a search tree that fits in the file, the 16 zero bytes that end
   it); then a full walk of the search tree, decoding the record of every network, each of which
   must be a map (as every GeoIP2/GeoLite2 record is); then the canaries, addresses whose facts
   are known (from the YAML source the database is built from, and from the
   ``network.geoip_canaries`` setting), must give exactly those facts.
3. Only bytes that passed are served, from memory: on Linux they go to a sealed ``memfd`` (no
   one can shrink, grow or write it) that libmaxminddb's C reader maps; elsewhere the pure-Python
   reader holds the bytes. The walk costs time proportional to the number of networks, once per
   load, on a worker thread when reloading.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import maxminddb

from .address import IPAddress
from .facts import GeoDatabaseError, GeoFacts

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


@dataclass(frozen=True, slots=True)
class FileSignature:
    """What changes when a file is replaced or written to: a cheap ``stat``."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileSignature:
        """Stat ``path``; raises ``OSError`` when it cannot."""
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class Canary:
    """An address whose facts are known: a database that says otherwise is refused.

    With ``country_only`` only the country is compared (canaries from settings name just that);
    otherwise every fact (canaries from the YAML source the database is built from).
    """

    ip: IPAddress
    facts: GeoFacts
    country_only: bool = False

    def matches(self, found: GeoFacts) -> bool:
        """Whether the database's answer agrees with what is known."""
        if self.country_only:
            return found.country == self.facts.country
        return found == self.facts


def country_canaries(countries: Mapping[str, str]) -> list[Canary]:
    """Canaries from ``{address: ISO country code}`` (the ``network.geoip_canaries`` setting)."""
    return [
        Canary(ipaddress.ip_address(ip), GeoFacts(country=code), country_only=True)
        for ip, code in countries.items()
    ]


def source_canaries(source: Path) -> list[Canary]:
    """One canary per network of a YAML source: an address that no more specific network of
    the source covers, with the facts the source gives it.

    Raises:
        GeoDatabaseError: the source is missing or invalid.
    """
    from .builder import load_source

    entries = load_source(source).networks
    networks = [entry.ip_network for entry in entries]
    canaries: list[Canary] = []
    for entry, network in zip(entries, networks, strict=True):
        for ip in (network.network_address, network.broadcast_address):
            covered = any(
                other.version == network.version
                and other.prefixlen > network.prefixlen
                and ip in other
                for other in networks
            )
            if not covered:
                canaries.append(Canary(ip, GeoFacts.from_record(entry.record())))
                break
    return canaries


@dataclass(frozen=True, slots=True)
class GeoSnapshot:
    """One database, read into memory and verified; what ``GeoLocator`` serves from."""

    reader: maxminddb.Reader
    signature: FileSignature
    database_type: str
    build_epoch: int
    ipv4_only: bool
    networks: int
    loaded_at: float


def load_snapshot(path: Path, canaries: Iterable[Canary] = ()) -> GeoSnapshot:
    """Read ``path`` into memory, verify it, and return a reader over the verified bytes.

    Raises:
        GeoDatabaseError: the file is missing, changed while being read, or fails a check;
            its ``reason`` says which, without naming the file.
    """
    try:
        before = FileSignature.of(path)
        with path.open("rb") as handle:
            data = handle.read()
        after = FileSignature.of(path)
    except FileNotFoundError as exc:
        raise GeoDatabaseError(
            f"GeoIP database not found: {path}", reason="the database file is missing"
        ) from exc
    except OSError as exc:
        raise GeoDatabaseError(
            f"cannot read GeoIP database {path}: {exc.strerror}",
            reason="the database file cannot be read",
        ) from exc
    if before != after or len(data) != after.size:
        reason = "the database file changed while it was read"
        raise GeoDatabaseError(f"GeoIP database {path}: {reason}", reason=reason)
    if not data:
        reason = "the database file is empty"
        raise GeoDatabaseError(f"GeoIP database {path}: {reason}", reason=reason)
    if _METADATA_MARKER not in data[-128 * 1024 :]:
        # The metadata sits at the end of the file (and within its last 128 KiB): cut short.
        reason = "not a MaxMind DB: no metadata at the end (cut short?)"
        raise GeoDatabaseError(f"cannot read GeoIP database {path}: {reason}", reason=reason)
    try:
        reader = open_in_memory(data)
    except Exception as exc:  # a header too damaged to open: any error means the same
        reason = f"not a MaxMind DB ({type(exc).__name__}: {exc})"
        raise GeoDatabaseError(
            f"cannot read GeoIP database {path}: {reason}", reason="not a MaxMind DB"
        ) from exc
    try:
        networks = verify(reader, data, canaries)
    except GeoDatabaseError as exc:
        reader.close()
        message = f"GeoIP database {path} is damaged: {exc}"
        raise GeoDatabaseError(message, reason=exc.reason) from exc
    metadata = reader.metadata()
    return GeoSnapshot(
        reader=reader,
        signature=after,
        database_type=str(metadata.database_type),
        build_epoch=int(metadata.build_epoch),
        ipv4_only=metadata.ip_version == 4,
        networks=networks,
        loaded_at=time.time(),
    )


def open_in_memory(data: bytes) -> maxminddb.Reader:
    """A reader over ``data`` that no file on disk backs.

    The C reader (about 20 times faster than the pure-Python one) only reads a file it maps
    itself, so the bytes go to an anonymous memory file sealed against any change; where that
    is unavailable (not Linux, or no C extension), the pure-Python reader keeps the bytes.
    """
    extension = getattr(maxminddb, "extension", None)
    if extension is not None and hasattr(extension, "Reader") and hasattr(os, "memfd_create"):
        with contextlib.suppress(OSError):
            return _open_sealed(data)
    return maxminddb.open_database(io.BytesIO(data), maxminddb.MODE_FD)


def _open_sealed(data: bytes) -> maxminddb.Reader:
    import fcntl

    fd = os.memfd_create("gatekeeper-geoip", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        # libmaxminddb opens the path, maps it and closes its own descriptor; the mapping keeps
        # the memory file alive after ours is closed too.
        return maxminddb.open_database(f"/proc/self/fd/{fd}", maxminddb.MODE_MMAP_EXT)
    finally:
        os.close(fd)


def verify(reader: maxminddb.Reader, data: bytes, canaries: Iterable[Canary] = ()) -> int:
    """Check a database (see the module docstring); return how many networks it holds.

    Raises:
        GeoDatabaseError: the first check that failed; the message never names an address.
    """
    metadata = reader.metadata()
    node_count, record_size = int(metadata.node_count), int(metadata.record_size)
    if metadata.binary_format_major_version != 2:
        _refuse(f"binary format {metadata.binary_format_major_version} is not 2")
    if metadata.ip_version not in (4, 6):
        _refuse(f"ip_version {metadata.ip_version} is neither 4 nor 6")
    if record_size not in (24, 28, 32) or node_count <= 0:
        _refuse(f"search tree of {node_count} nodes of {record_size}-bit records")
    tree_size = node_count * record_size // 4
    marker = data.rfind(_METADATA_MARKER)
    if tree_size + 16 > marker:
        _refuse("the search tree is larger than the file")
    if data[tree_size : tree_size + 16] != bytes(16):
        _refuse("the bytes between the search tree and the data section are not zero")
    networks = 0
    try:
        for _network, record in reader:
            if not isinstance(record, Mapping):
                _refuse(f"a record is a {type(record).__name__}, not a map")
            networks += 1
    except GeoDatabaseError:
        raise
    except Exception as exc:  # the readers raise several types for damaged bytes
        _refuse("walking the search tree failed", f"{type(exc).__name__}: {exc}")
    for canary in canaries:
        try:
            found = GeoFacts.from_record(_get(reader, canary.ip))
        except Exception as exc:
            _refuse("a canary address cannot be looked up", f"{canary.ip}: {exc}")
        if not canary.matches(found):
            _refuse(
                "a canary address does not give its known facts",
                f"{canary.ip} gives {found}, not {canary.facts}",
            )
    return networks


def _get(reader: maxminddb.Reader, ip: IPAddress) -> Any:
    if reader.metadata().ip_version == 4 and ip.version == 6:
        return None
    return reader.get(ip)


def _refuse(reason: str, detail: str | None = None) -> NoReturn:
    # The reason may reach /readyz; the detail (which may name an address) only the log.
    raise GeoDatabaseError(f"{reason} ({detail})" if detail else reason, reason=reason)
