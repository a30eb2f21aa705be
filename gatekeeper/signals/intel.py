"""Shared intelligence on the request path: indicators another provider (or this one) shared.

``gatekeeper intel import`` (gatekeeper/offline/intel.py) turns STIX 2.1 bundles into one JSON
document of indicators (docs/intel.md); setting ``signals.intel_path`` names such a file, or a
directory of them. This module loads them once, into lookups built at load and reload, never
per request:

- network prefixes: per address family, one dict per prefix length present (network int ->
  indicators); a lookup masks the address once per length (a handful of lengths in practice);
- ASNs, user agents, payment-fingerprint hashes (SHA-256 of ``subject.payment_fingerprint``)
  and prompt-family band keys (each compact key under every band key it can stand for, so a
  request's keys are looked up as the sketch spells them): one dict each.

``IntelIndex.match`` returns the indicators that match a request and are valid at that moment
(``valid_from <= now < valid_until``), as ``input.signals.indicators`` holds them. Expiry is
checked on a match only, so an index need not be rebuilt when an indicator expires.

``IntelSource`` owns the path: a damaged file refuses start-up; on reload (the signal stage's
maintenance, the file read on a worker thread) a damaged or missing file keeps the last good
index and is counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.errors import ConfigurationError
from gatekeeper.health import PartHealth

log = logging.getLogger("gatekeeper.signals.intel")

#: The version of the intel document ``gatekeeper intel import`` writes.
INTEL_VERSION = 1

#: Indicator kinds, as ``input.signals.indicators[].kind`` names them.
KINDS = ("network", "asn", "user_agent", "payment", "prompt_family")

_FOREVER = float("inf")


def payment_hash(fingerprint: str) -> str:
    """The SHA-256 (hex) of a payment fingerprint, as payment indicators carry it."""
    return hashlib.sha256(fingerprint.encode()).hexdigest()


def compact_band(key: str) -> str:
    """A prompt-family band key without separators (``"3:ab.cd"`` -> ``"3abcd"``), the form
    family ids (``f-<first band>``) and exported indicators use."""
    return key.removeprefix("f-").replace(":", "").replace(".", "")


def band_spellings(compact: str) -> list[str]:
    """The band keys (``"<band>:<hex>.<hex>"``, as ``FamilyIndex.keys`` spells them) a compact
    key can stand for: each split of its hex digits into two values of 1-7 digits without a
    leading zero. Indexed at load, so that a request's keys are looked up as they are."""
    band, digits = compact[:1], compact[1:]
    out = []
    for cut in range(1, len(digits)):
        left, right = digits[:cut], digits[cut:]
        if len(left) > 7 or len(right) > 7:
            continue
        if (left[0] == "0" and left != "0") or (right[0] == "0" and right != "0"):
            continue
        out.append(f"{band}:{left}.{right}")
    return out


def _address(text: str) -> tuple[int, int] | None:
    """The version and integer value of an IP address (``None`` when it is not one)."""
    try:
        if ":" in text:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        return None


def _timestamp(value: Any, field: str, ident: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"indicator {ident}: {field} is not a timestamp")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise ValueError(f"indicator {ident}: {field} {value!r} is not RFC 3339") from exc


class _Entry:
    """One indicator as a match reports it, with its validity as seconds."""

    __slots__ = ("document", "ident", "valid_from", "valid_until")

    def __init__(self, item: dict[str, Any]) -> None:
        ident = item.get("id")
        if not isinstance(ident, str) or not ident:
            raise ValueError("an indicator without an id")
        self.ident = ident
        source = item.get("source")
        confidence = item.get("confidence")
        if confidence is not None and (type(confidence) is not int or not 0 <= confidence <= 100):
            raise ValueError(f"indicator {ident}: confidence must be an integer 0-100")
        self.valid_from = _timestamp(item.get("valid_from"), "valid_from", ident) or 0.0
        until = _timestamp(item.get("valid_until"), "valid_until", ident)
        self.valid_until = _FOREVER if until is None else until
        self.document = {
            "id": ident,
            "source": source if isinstance(source, str) else None,
            "confidence": confidence,
        }

    def valid(self, now: float) -> bool:
        return self.valid_from <= now < self.valid_until


class IntelIndex:
    """The lookups of a set of indicators (built once; read-only afterwards)."""

    def __init__(self, indicators: Iterable[dict[str, Any]]) -> None:
        #: address version -> [(prefix length, {network int: entries})], longest first
        self._networks: dict[int, list[tuple[int, dict[int, list[_Entry]]]]] = {}
        self._asn: dict[int, list[_Entry]] = {}
        self._user_agent: dict[str, list[_Entry]] = {}
        self._payment: dict[str, list[_Entry]] = {}
        self._family: dict[str, list[_Entry]] = {}
        self.size = 0
        self.expires: float = _FOREVER
        by_length: dict[tuple[int, int], dict[int, list[_Entry]]] = {}
        for item in indicators:
            if not isinstance(item, dict):
                raise ValueError("an indicator is not an object")
            entry = _Entry(item)
            self.size += 1
            match = item.get("match")
            if not isinstance(match, dict) or not match:
                raise ValueError(f"indicator {entry.ident}: no match values")
            for kind, values in match.items():
                if kind not in KINDS:
                    raise ValueError(f"indicator {entry.ident}: unknown kind {kind!r}")
                if not isinstance(values, list):
                    raise ValueError(f"indicator {entry.ident}: {kind} is not a list")
                for value in values:
                    self._add(entry, kind, value, by_length)
        for (version, length), table in sorted(by_length.items(), key=lambda kv: -kv[0][1]):
            self._networks.setdefault(version, []).append((length, table))

    def _add(
        self,
        entry: _Entry,
        kind: str,
        value: Any,
        by_length: dict[tuple[int, int], dict[int, list[_Entry]]],
    ) -> None:
        ident = entry.ident
        if kind == "network":
            try:
                network = ipaddress.ip_network(str(value), strict=False)
            except ValueError as exc:
                raise ValueError(f"indicator {ident}: {exc}") from exc
            table = by_length.setdefault((network.version, network.prefixlen), {})
            table.setdefault(int(network.network_address), []).append(entry)
        elif kind == "asn":
            if type(value) is not int or value < 0:
                raise ValueError(f"indicator {ident}: ASN {value!r} is not a number")
            self._asn.setdefault(value, []).append(entry)
        else:
            if not isinstance(value, str) or not value:
                raise ValueError(f"indicator {ident}: {kind} {value!r} is not a string")
            if kind == "user_agent":
                self._user_agent.setdefault(value, []).append(entry)
            elif kind == "payment":
                self._payment.setdefault(value.lower(), []).append(entry)
            else:
                for key in band_spellings(compact_band(value)):
                    self._family.setdefault(key, []).append(entry)

    def match(
        self,
        now: float,
        *,
        client_ip: str | None = None,
        asn: int | None = None,
        user_agent: str | None = None,
        payment_fingerprint: str | None = None,
        bands: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The valid indicators matching these facts: ``[{id, kind, source, confidence}]``,
        each indicator once per kind, in the order of ``KINDS``."""
        found: list[tuple[str, list[_Entry]]] = []
        if self._networks and client_ip:
            address = _address(client_ip)
            if address is not None:
                version, value = address
                tables = self._networks.get(version)
                if tables:
                    bits = 32 if version == 4 else 128
                    for length, table in tables:
                        hits = table.get(value >> (bits - length) << (bits - length))
                        if hits:
                            found.append(("network", hits))
        if asn is not None and self._asn:
            hits = self._asn.get(asn)
            if hits:
                found.append(("asn", hits))
        if user_agent and self._user_agent:
            hits = self._user_agent.get(user_agent)
            if hits:
                found.append(("user_agent", hits))
        if payment_fingerprint and self._payment:
            hits = self._payment.get(payment_hash(payment_fingerprint))
            if hits:
                found.append(("payment", hits))
        if bands and self._family:
            family = self._family
            for key in bands:
                hits = family.get(key)
                if hits:
                    found.append(("prompt_family", hits))
        if not found:
            return []
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for kind, entries in found:
            for entry in entries:
                if (entry.ident, kind) in seen or not entry.valid(now):
                    continue
                seen.add((entry.ident, kind))
                out.append({"id": entry.ident, "kind": kind, **entry.document})
        return out

    def stats(self) -> dict[str, int]:
        return {
            "intel_indicators": self.size,
            "intel_prefix_lengths": sum(len(t) for t in self._networks.values()),
        }


def read_documents(path: Path) -> list[dict[str, Any]]:
    """The intel documents at ``path`` (a file, or every ``*.json`` of a directory)."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    documents = []
    for file in files:
        try:
            document = orjson.loads(file.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"{file.name}: {exc}") from exc
        if not isinstance(document, dict) or document.get("version") != INTEL_VERSION:
            raise ValueError(f"{file.name}: not an intel document (version {INTEL_VERSION})")
        if not isinstance(document.get("indicators"), list):
            raise ValueError(f"{file.name}: 'indicators' is not a list")
        documents.append(document)
    return documents


def load_index(path: Path) -> IntelIndex:
    """The index of every indicator at ``path``; raises ``ValueError`` for a damaged file."""
    documents = read_documents(path)
    return IntelIndex(item for document in documents for item in document["indicators"])


def _signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    out = []
    for file in files:
        st = file.stat()
        out.append((file.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


class IntelSource:
    """The indicators at a path, reloaded when its files change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counters = {"reloads": 0, "reload_errors": 0}
        #: The files changed and were refused at the last reload (the last good index serves).
        self.refused = False
        try:
            self._signature = _signature(path)
            self.index = load_index(path)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"signals.intel_path: {exc}") from exc

    def match(self, now: float, **facts: Any) -> list[dict[str, Any]]:
        return self.index.match(now, **facts)

    async def refresh(self) -> bool:
        """Reload if the files changed (read and built on a worker thread); a damaged or
        missing file keeps the last good index. Whether a new index was installed."""
        signature: tuple[tuple[str, int, int], ...] | None = None
        try:
            signature = await asyncio.to_thread(_signature, self.path)
            if signature == self._signature:
                return False
            index = await asyncio.to_thread(load_index, self.path)
        except (OSError, ValueError) as exc:
            if signature is not None:
                self._signature = signature  # reported once, retried when it changes again
            self.counters["reload_errors"] += 1
            self.refused = True
            log.warning("signals.intel_path not reloaded, the last good one is kept: %s", exc)
            return False
        self.index, self._signature = index, signature
        self.refused = False
        self.counters["reloads"] += 1
        log.info("shared intelligence reloaded: %d indicators", index.size)
        return True

    async def health(self) -> PartHealth:
        """For readiness: ok throughout (the last good index serves), ``degraded`` while
        changed files stand refused."""
        return PartHealth(
            ok=True,
            degraded=self.refused,
            detail={
                "status": "degraded" if self.refused else "ok",
                **self.index.stats(),
                **{f"intel_{k}": v for k, v in self.counters.items()},
            },
        )
