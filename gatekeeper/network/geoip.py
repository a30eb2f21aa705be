"""Country and network facts for an IP address, from a validated MaxMind-format database.

:class:`GeoLocator` serves lookups from a database read into memory and verified
(:mod:`gatekeeper.network.database`); which record fields become which facts is in
:mod:`gatekeeper.network.facts`. A lookup is a short walk of an in-memory tree (libmaxminddb's C
reader when installed) and never blocks the event loop on I/O; an LRU cache in front makes
repeated clients cheaper still.

Data files are validated, never trusted:

- at start-up a missing or damaged database raises :class:`GeoDatabaseError` (a
  ``ConfigurationError``): gatekeeper does not start without a database it can believe;
- with ``reload_interval``, a background task looks at the file (one ``stat``; with a YAML
  source, the source is rebuilt first when newer) and loads a changed one on a worker thread; a
  file that fails verification is refused and the last good database keeps serving, and
  ``status()`` says ``degraded`` (``/readyz``) until a later file passes;
- a lookup that fails all the same gives :data:`LOOKUP_FAILED` (every fact unknown and
  ``lookup_error`` set, which the policy refuses for every tier), is counted and logged, and is
  not cached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from gatekeeper._tasks import cancel_and_wait, poll
from gatekeeper.health import PartHealth

from .address import IPAddress, parse_ip
from .database import (
    Canary,
    FileSignature,
    GeoSnapshot,
    country_canaries,
    load_snapshot,
    source_canaries,
)
from .facts import EMPTY_FACTS, LOOKUP_FAILED, GeoDatabaseError, GeoFacts

__all__ = ["EMPTY_FACTS", "LOOKUP_FAILED", "GeoDatabaseError", "GeoFacts", "GeoLocator"]

log = logging.getLogger("gatekeeper.network")


class _LookupFailed(Exception):
    """Raised inside the cached lookup so that a failure is never cached."""


class GeoLocator:
    """Look addresses up in a MaxMind-format database that was checked first.

    Args:
        database_path: the ``.mmdb`` file.
        cache_size: how many distinct addresses to remember; 0 disables the cache.
        source: the YAML file the database is built from (``network.geoip_source``): every
            network in it is a canary, and a newer source is rebuilt before a reload.
        canaries: ``{address: ISO country code}`` that the database must agree with.
        reload_interval: seconds between two looks at the file once :meth:`start` ran (or the
            first lookup on a running event loop); 0 never looks again.

    Raises:
        GeoDatabaseError: the file does not exist, is not a MaxMind DB, or fails verification.
    """

    def __init__(
        self,
        database_path: str | os.PathLike[str],
        *,
        cache_size: int = 16_384,
        source: str | os.PathLike[str] | None = None,
        canaries: Mapping[str, str] | None = None,
        reload_interval: float = 0.0,
    ) -> None:
        self._path = Path(database_path)
        self._source = Path(source) if source is not None else None
        try:
            self._canaries = country_canaries(canaries or {})
        except ValueError as exc:
            raise GeoDatabaseError(f"GeoIP canaries: {exc}") from exc
        self._cache_size = cache_size
        self.reload_interval = reload_interval
        #: Lookups the database failed to answer (each was given ``LOOKUP_FAILED``).
        self.lookup_errors = 0
        self.reloads = 0
        self.reload_failures = 0
        #: Why the last changed file was refused (no file name, no address); None once one passes.
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_checked_at: float | None = None
        self._errors_at_load = 0
        self._refused: object = None
        self._task: asyncio.Task[None] | None = None
        self._check_lock: asyncio.Lock | None = None
        self._snapshot = load_snapshot(self._path, self._all_canaries())
        self._cached = self._new_cache()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def database_type(self) -> str:
        """The database's own name for its type, e.g. ``GeoLite2-City``."""
        return self._snapshot.database_type

    @property
    def build_epoch(self) -> int:
        """When the database says it was built (Unix seconds), for the start-up log."""
        return self._snapshot.build_epoch

    @property
    def networks(self) -> int:
        """How many networks the verified database holds."""
        return self._snapshot.networks

    # -- lookups ---------------------------------------------------------------------------

    def lookup(self, ip: str | IPAddress) -> GeoFacts:
        """Return the facts for ``ip``: empty facts when the database has no record for it,
        :data:`LOOKUP_FAILED` when the database could not answer (counted).

        Raises:
            ValueError: ``ip`` is not an IP address.
        """
        if self._task is None and self.reload_interval > 0:
            self._start_watching()
        try:
            return self._cached(ip)
        except _LookupFailed as exc:
            self.lookup_errors += 1
            if self.lookup_errors == self._errors_at_load + 1:
                log.error("GeoIP lookup failed; the address is treated as unknown: %s", exc)
            return LOOKUP_FAILED

    def _new_cache(self) -> Callable[[str | IPAddress], GeoFacts]:
        if not self._cache_size:
            return self._lookup
        return lru_cache(maxsize=self._cache_size)(self._lookup)

    def _lookup(self, ip: str | IPAddress) -> GeoFacts:
        # Cached on the caller's value, so a repeat client costs one dict probe and no parse.
        address = parse_ip(ip if isinstance(ip, str) else str(ip))
        if address is None:
            raise ValueError(f"not an IP address: {ip!r}")
        snapshot = self._snapshot
        if snapshot.ipv4_only and isinstance(address, ipaddress.IPv6Address):
            return EMPTY_FACTS
        try:
            record = snapshot.reader.get(address)
        except Exception as exc:  # a damaged record, whatever the reader raises for it
            raise _LookupFailed(f"{type(exc).__name__}: {exc}") from exc
        return GeoFacts.from_record(record)

    # -- reloading -------------------------------------------------------------------------

    def _all_canaries(self) -> list[Canary]:
        canaries = list(self._canaries)
        if self._source is not None:
            canaries += source_canaries(self._source)
        return canaries

    async def start(self) -> None:
        """Start looking at the file every ``reload_interval`` seconds (if above 0)."""
        if self.reload_interval > 0:
            self._start_watching()

    def _start_watching(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on an event loop (the CLI): nothing to watch with
        if self._task is None or self._task.done():
            watcher = poll(self.reload_interval, self.check, log, "GeoIP reload check failed")
            self._task = loop.create_task(watcher, name="gatekeeper-geoip-reload")

    async def check(self) -> bool:
        """Look at the file once: ``True`` if a changed, verified database now serves.

        Never raises for a bad file: it is refused and the last good database kept."""
        if self._check_lock is None:
            self._check_lock = asyncio.Lock()
        async with self._check_lock:
            self.last_checked_at = time.time()
            key, outcome = await asyncio.to_thread(self._look)
            if outcome is None:
                return False
            if isinstance(outcome, GeoDatabaseError):
                self._refuse(key, outcome)
                return False
            # Swapped on the event loop, where lookups run: none sees half of a swap. The old
            # reader is not closed here but freed with its last reference.
            self._snapshot = outcome
            self._cached = self._new_cache()
            self._errors_at_load = self.lookup_errors
            self._refused = None
            self.reloads += 1
            self.last_error = None
            self.last_error_at = None
            log.info(
                "GeoIP database reloaded: %s, %d networks", outcome.database_type, outcome.networks
            )
            return True

    def _look(self) -> tuple[object, GeoSnapshot | GeoDatabaseError | None]:
        """On a worker thread: what changed, and the new snapshot or why it is refused."""
        try:
            if self._source is not None:
                from .builder import ensure_database

                ensure_database(self._source, self._path)
            signature: object = FileSignature.of(self._path)
        except GeoDatabaseError as exc:
            return exc.reason, exc
        except OSError as exc:
            reason = "the database file is missing or cannot be read"
            return reason, GeoDatabaseError(f"GeoIP database {self._path}: {exc}", reason=reason)
        if signature in (self._snapshot.signature, self._refused):
            return signature, None
        try:
            return signature, load_snapshot(self._path, self._all_canaries())
        except GeoDatabaseError as exc:
            return signature, exc

    def _refuse(self, key: object, exc: GeoDatabaseError) -> None:
        if key == self._refused:
            return  # the same broken file (or the same missing one): counted and logged once
        self._refused = key
        self.reload_failures += 1
        self.last_error = exc.reason
        self.last_error_at = time.time()
        log.error("GeoIP database refused, the last good one keeps serving: %s", exc)

    # -- state -----------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """Lookup errors, reloads and refused reloads, for the metrics."""
        return {
            "lookup_errors": self.lookup_errors,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
        }

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: ``degraded`` while a changed file stands refused or the database
        has failed lookups since it was loaded; the last good database serves meanwhile."""
        snapshot = self._snapshot
        degraded = self.last_error is not None or self.lookup_errors > self._errors_at_load
        return {
            "status": "degraded" if degraded else "ok",
            "database_type": snapshot.database_type,
            "build_epoch": snapshot.build_epoch,
            "networks": snapshot.networks,
            "loaded_at": snapshot.loaded_at,
            "reload_interval_seconds": self.reload_interval,
            "last_checked_at": self.last_checked_at,
            **self.counters,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

    async def health(self) -> PartHealth:
        """``status()``; ok throughout (the last good database serves), degraded as above."""
        status = self.status()
        return PartHealth(ok=True, degraded=status["status"] == "degraded", detail=status)

    def close(self) -> None:
        """Stop watching and release the database."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._snapshot.reader.close()

    async def aclose(self) -> None:
        """Stop watching (waiting for the watcher to end) and release the database."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.close()

    def __enter__(self) -> GeoLocator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
