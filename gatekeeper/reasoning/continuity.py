"""Multi-turn continuity: keep the reasoning a subject was not shown, give it back upstream.

APIs that reason want earlier reasoning back on later turns (Anthropic: the thinking blocks of a
turn that called tools, verbatim; Responses in stateless use: reasoning items with their
``encrypted_content``; DeepSeek: ``reasoning_content`` of tool-call turns). A client that never
saw the reasoning cannot send it, so gatekeeper keeps what it removed or rewrote in a
``ReasoningVault`` and puts it back into the next request's history before forwarding it.

Entries are keyed by the subject that received the response plus the ids a later request will
carry (item ids, tool call ids, gatekeeper's placeholder handles), and expire after a TTL. A key
is only ever looked up under the requesting subject, so replaying another subject's ids restores
nothing. The vault lives where quotas live: in process for ``memory://``, in Redis for the
``redis`` family (one hash tag per subject, so a subject's keys share a Cluster slot and one
``MGET`` reads them).

Continuity never fails a request: a vault that cannot be reached within ``timeout`` is logged
and counted, the request goes on without restoration, and the response is sent without keeping.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.exceptions import RedisError

from gatekeeper.errors import ConfigurationError

log = logging.getLogger("gatekeeper.shaping")


class ReasoningVault(Protocol):
    """Stores opaque values under string keys, each with a time to live."""

    async def put(self, entries: list[tuple[str, bytes]], ttl: float) -> None:
        """Store every ``(key, value)`` for ``ttl`` seconds (replacing what was there)."""
        ...

    async def get(self, keys: list[str]) -> dict[str, bytes]:
        """The values stored under ``keys`` that have not expired."""
        ...

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class MemoryVault:
    """The in-process vault (one process; the default with ``memory://`` quotas).

    Holds at most ``max_entries``; past that the oldest entries are forgotten first.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def put(self, entries: list[tuple[str, bytes]], ttl: float) -> None:
        expires = self._clock() + ttl
        for key, value in entries:
            self._data[key] = (expires, value)
            self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def get(self, keys: list[str]) -> dict[str, bytes]:
        now = self._clock()
        found: dict[str, bytes] = {}
        for key in keys:
            entry = self._data.get(key)
            if entry is None:
                continue
            if entry[0] <= now:
                del self._data[key]
            else:
                found[key] = entry[1]
        return found

    async def health(self) -> dict[str, Any]:
        return {"backend": "memory", "state": "up", "entries": len(self._data)}

    async def aclose(self) -> None:
        self._data.clear()


class RedisVault:
    """The vault in Redis: ``SET … PX`` through a pipeline, ``MGET`` to read."""

    def __init__(self, client: Any, *, description: str = "redis") -> None:
        self.client = client
        self.description = description

    async def put(self, entries: list[tuple[str, bytes]], ttl: float) -> None:
        if not entries:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, value in entries:
            pipe.set(key, value, px=max(1, int(ttl * 1000)))
        await pipe.execute()

    async def get(self, keys: list[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        values = await self.client.mget(keys)
        return {k: bytes(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def health(self) -> dict[str, Any]:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            return {"backend": self.description, "state": "down", "error": str(exc)}
        return {"backend": self.description, "state": "up"}

    async def aclose(self) -> None:
        await self.client.aclose()


def open_vault(
    storage: str,
    *,
    max_entries: int = 100_000,
    max_connections: int = 100,
    pool_timeout: float = 1.0,
) -> ReasoningVault:
    """The vault for the quota storage URI ``storage`` (memory or the Redis family).

    A Redis vault's client holds at most ``max_connections`` connections; a read or write that
    finds them all busy waits up to ``pool_timeout`` seconds for one (``redis_client``), then
    fails like a vault that cannot be reached (continuity degrades, the request goes on).
    """
    # Imported here: the quota package is not needed by callers that only use the memory vault.
    from gatekeeper.quota.factory import SCHEMES
    from gatekeeper.redis_client import redact, redis_client

    uri = storage.strip().removeprefix("async+")
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "memory":
        return MemoryVault(max_entries=max_entries)
    if scheme not in SCHEMES:
        raise ConfigurationError(f"no reasoning vault for storage {redact(uri)!r}")
    try:
        client = redis_client(uri, max_connections=max_connections, pool_timeout=pool_timeout)
        return RedisVault(client, description=redact(uri))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"reasoning vault {redact(uri)!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ContinuityVault:
    """The vault continuity keeps reasoning in, and how: the same for every request."""

    vault: ReasoningVault
    #: ``quota.key_prefix``: continuity's keys live beside the quotas'.
    prefix: str = "gk"
    #: ``shaping.continuity_ttl_seconds``: how long kept reasoning can be restored.
    ttl: float = 86_400.0
    #: ``shaping.continuity_timeout``: seconds a vault read or write may take.
    timeout: float = 0.25


@functools.lru_cache(maxsize=65_536)
def _subject_prefix(prefix: str, subject_id: str) -> str:
    """The vault key prefix of one subject. The subject id is hashed: any id makes a valid
    Redis hash tag, and ids stay out of keys. Cached: a subject's requests repeat it, and the
    hash is most of what a request's ``Continuity`` costs to build."""
    tag = hashlib.sha256(subject_id.encode("utf-8")).hexdigest()[:20]
    return f"{prefix}:rv:{{{tag}}}:"


class Continuity:
    """Continuity for one request of one subject: restore its history, keep its response."""

    def __init__(self, kept: ContinuityVault, subject_id: str) -> None:
        self.vault = kept.vault
        self.ttl = kept.ttl
        self.timeout = kept.timeout
        self._prefix = _subject_prefix(kept.prefix, subject_id)
        #: For the decision log: blocks restored, blocks kept, vault errors.
        self.restored = 0
        self.kept = 0
        self.errors = 0

    def key(self, name: str) -> str:
        """The vault key of a dialect key (``openai_responses:rs:rs_123``) for this subject."""
        return self._prefix + name

    async def restore(self, dialect: Any, body: bytes) -> bytes:
        """``body`` with the subject's kept reasoning put back into its history.

        ``dialect`` is a ``gatekeeper.dialects.Dialect``. Returns ``body`` itself when nothing
        was restored (the bytes go upstream unchanged).
        """
        if not any(marker in body for marker in dialect.history_markers):
            return body
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        names = dialect.history_keys(document)
        if not names:
            return body
        try:
            raw = await asyncio.wait_for(
                self.vault.get([self.key(n) for n in dict.fromkeys(names)]), self.timeout
            )
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed("read", exc)
            return body
        found: dict[str, Any] = {}
        for name in names:
            value = raw.get(self.key(name))
            if value is not None:
                found[name] = orjson.loads(value)
        restored_document, count = dialect.restore_history(document, found)
        if restored_document is document:
            return body
        self.restored += count
        return orjson.dumps(restored_document)

    async def save(self, kept: list[Any]) -> None:
        """Store ``kept`` (``KeptReasoning`` entries of one response) under this subject."""
        entries = [
            (self.key(name), orjson.dumps(item.value)) for item in kept for name in item.keys
        ]
        if not entries:
            return
        try:
            await asyncio.wait_for(self.vault.put(entries, self.ttl), self.timeout)
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed("write", exc)
            return
        self.kept += len(kept)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        reason = f"no answer within {self.timeout:g} s" if isinstance(exc, TimeoutError) else exc
        log.warning("reasoning vault %s failed (%s); continuing without continuity", what, reason)
