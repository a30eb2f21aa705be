"""An in-process cache of looked-up subjects, in front of any store or resolver hook.

Entries are keyed by the SHA-256 of the credential (never the credential itself), live
``ttl`` seconds and are bounded in number (least recently used out first). Unknown credentials
are cached too, so a flood of made-up keys costs the store one lookup per key per ``ttl``. A
subject revoked in its store therefore stops working within ``ttl`` seconds in every process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gatekeeper.contract import Subject
from gatekeeper.health import PartHealth
from gatekeeper.identity.stores import SubjectStore, hash_api_key


class SubjectCache:
    """``digest -> Subject | None`` for ``ttl`` seconds, at most ``size`` entries."""

    def __init__(
        self, ttl: float, size: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Subject | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> tuple[bool, Subject | None]:
        """``(hit, subject)``: a copy of the cached subject, so no request changes another's."""
        entry = self._entries.get(digest)
        if entry is None:
            return False, None
        expires, subject = entry
        if expires <= self._clock():
            del self._entries[digest]
            return False, None
        self._entries.move_to_end(digest)
        return True, subject.model_copy() if subject is not None else None

    def put(self, digest: str, subject: Subject | None) -> None:
        if self.ttl <= 0:
            return
        self._entries[digest] = (self._clock() + self.ttl, subject)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def discard(self, digest: str) -> None:
        self._entries.pop(digest, None)


class CachedSubjectStore:
    """A ``SubjectStore`` that asks ``store`` at most once per key per ``ttl`` seconds."""

    def __init__(self, store: SubjectStore, ttl: float, size: int) -> None:
        self.store = store
        self.cache = SubjectCache(ttl, size)

    async def lookup(self, api_key: str) -> Subject | None:
        digest = hash_api_key(api_key)
        hit, subject = self.cache.get(digest)
        if hit:
            return subject
        subject = await self.store.lookup(api_key)  # IdentityError is not cached
        self.cache.put(digest, subject)
        return subject.model_copy() if subject is not None else None

    async def health(self) -> PartHealth:
        return await self.store.health()

    async def aclose(self) -> None:
        await self.store.aclose()
