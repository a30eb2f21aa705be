"""Where the signal state lives: in one process, or shared by every gateway through Redis.

Signal reads never leave the process: every gateway keeps the whole ``SignalState`` and reads
it synchronously on the request path (no await, no round trip). Storage decides how the
observations of other gateways reach it:

- ``MemorySignalStore``: one process; observations are applied where they happen.
- ``RedisSignalStore``: each gateway applies its own observations at once and publishes them,
  batched, to one Redis stream (``XADD`` every ``flush_seconds``, fire-and-forget, trimmed by
  ``MINID`` to ``retention_seconds``: ``signals.replay_seconds``, by default the main window);
  a background reader (``XREAD BLOCK``) applies the other gateways' batches. A gateway that
  starts replays the stream's history, so it starts warm.
  Other gateways' requests are seen ``flush_seconds`` + one round trip late (about half a
  second by default): signals are eventually consistent, which is enough for patterns that
  take minutes to form.

Round trips per request: zero. Background: one ``XADD`` per flush interval per gateway, and
one outstanding ``XREAD``. When Redis is unreachable the state keeps counting this gateway's
own traffic; batches that cannot be published are dropped (counted, logged once per outage)
and the reader retries with a back-off. Signals never refuse a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from redis.exceptions import RedisError

from gatekeeper.redis_client import redact, redis_client
from gatekeeper.signals.state import Observation, SignalState

log = logging.getLogger("gatekeeper.signals")

#: Stream entries one read takes (each up to ``flush_seconds`` of one gateway's requests).
_READ_COUNT = 20
#: Observations of another gateway converted or applied between two turns of the event loop
#: (about 1 ms of work).
_SLICE = 64


class SignalStore(Protocol):
    """Applies observations to ``state`` and shares them with other gateways."""

    state: SignalState

    def publish(self, obs: Observation) -> None:
        """Apply ``obs`` now and replicate it (never blocks, never raises)."""
        ...

    async def start(self) -> None:
        """Start background work (idempotent; called from the event loop)."""
        ...

    async def sync(self) -> None:
        """Publish what is buffered and apply what others published (tests, simulator)."""
        ...

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class MemorySignalStore:
    """The state of one process."""

    def __init__(self, state: SignalState) -> None:
        self.state = state

    def publish(self, obs: Observation) -> None:
        self.state.apply(obs)

    async def start(self) -> None:
        return None

    async def sync(self) -> None:
        return None

    async def health(self) -> dict[str, Any]:
        return {"backend": "memory", "state": "up", **self.state.stats()}

    async def aclose(self) -> None:
        return None


class RedisSignalStore:
    """The state of every gateway, kept in step through one Redis stream."""

    def __init__(
        self,
        state: SignalState,
        uri: str,
        *,
        key: str = "gk:signals:events",
        flush_seconds: float = 0.5,
        retention_seconds: float = 86400.0,
        max_buffer: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.key = key
        self.description = redact(uri)
        self.flush_seconds = flush_seconds
        self.retention_seconds = retention_seconds
        self.max_buffer = max_buffer
        self.replica = uuid.uuid4().hex[:12]
        self.counters = {"published": 0, "applied": 0, "dropped": 0, "errors": 0}
        self._clock = clock
        self._writer = redis_client(uri, socket_timeout=2.0)
        # XREAD BLOCK holds its connection open for up to a second: a client of its own.
        self._reader = redis_client(uri, socket_timeout=5.0)
        self._buffer: list[list[Any]] = []
        self._last_id = f"{max(0, int((clock() - retention_seconds) * 1000))}-0"
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False
        self._read_lock = asyncio.Lock()

    def publish(self, obs: Observation) -> None:
        self.state.apply(obs)
        if len(self._buffer) >= self.max_buffer:
            self.counters["dropped"] += 1
            return
        self._buffer.append(obs.to_wire())

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="gatekeeper-signals-flush"),
            asyncio.create_task(self._read_loop(), name="gatekeeper-signals-read"),
        ]

    async def flush(self) -> None:
        """Publish the buffered observations as one stream entry (one round trip)."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        oldest_ms = max(0, int((self._clock() - self.retention_seconds) * 1000))
        try:
            await self._writer.xadd(
                self.key, {"r": self.replica, "o": orjson.dumps(batch)}, minid=oldest_ms
            )
        except (RedisError, OSError) as exc:
            self.counters["dropped"] += len(batch)
            self._failed(exc)
            return
        self.counters["published"] += len(batch)
        self._recovered()

    async def read_available(self, block_ms: int | None = None) -> int:
        """Apply other gateways' entries after the last one read; how many were applied.

        An entry holds one gateway's observations of a flush interval (two a request: 700 for
        half a second at 700 requests a second), and a gateway that starts replays the
        stream's history. Entries are read ``_READ_COUNT`` at a time, and converted and
        applied ``_SLICE`` observations at a time, the event loop running between slices:
        applied in one go, they stopped the loop for about 15 µs per observation (10 ms for
        that entry; a replay read 500 entries at once)."""
        async with self._read_lock:
            reply: Any = await self._reader.xread(
                {self.key: self._last_id}, count=_READ_COUNT, block=block_ms
            )
            applied = 0
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    applied += await self._apply_entry(fields)
            self.counters["applied"] += applied
            return applied

    async def _apply_entry(self, fields: dict[Any, Any]) -> int:
        """Apply another gateway's entry: all of it, or nothing when any part is malformed."""
        replica = fields.get(b"r", fields.get("r"))
        if isinstance(replica, bytes):
            replica = replica.decode()
        if replica == self.replica:
            return 0
        observations: list[Observation] = []
        try:
            raw = orjson.loads(fields.get(b"o", fields.get("o")) or b"[]")
            for start in range(0, len(raw), _SLICE):
                if start:
                    await asyncio.sleep(0)
                observations.extend(map(Observation.from_wire, raw[start : start + _SLICE]))
        except (ValueError, TypeError) as exc:
            self.counters["errors"] += 1
            log.warning("signals: skipped a malformed stream entry: %s", exc)
            return 0
        apply = self.state.apply
        for start in range(0, len(observations), _SLICE):
            await asyncio.sleep(0)
            for obs in observations[start : start + _SLICE]:
                apply(obs)
        return len(observations)

    async def sync(self) -> None:
        await self.flush()
        while await self.read_available() > 0:
            pass

    async def _flush_loop(self) -> None:
        # Connect now, at start-up: opening the connection on the first flush, in the middle
        # of the first requests, was measured to delay them (and their quota checks).
        with contextlib.suppress(RedisError, OSError):
            await self._writer.ping()
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def _read_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.read_available(block_ms=1000)
                backoff = 0.1
                self._recovered()
            except (RedisError, OSError) as exc:
                self._failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _failed(self, exc: BaseException) -> None:
        self.counters["errors"] += 1
        if not self._failing:
            self._failing = True
            log.warning(
                "signals store %s unavailable (%s): signals count this gateway's traffic "
                "only until it answers again",
                self.description,
                exc,
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("signals store %s reachable again", self.description)

    async def health(self) -> dict[str, Any]:
        try:
            await self._writer.ping()
        except (RedisError, OSError) as exc:
            return {"backend": self.description, "state": "down", "error": str(exc)}
        return {
            "backend": self.description,
            "state": "up",
            **self.state.stats(),
            **self.counters,
        }

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self.flush()
        await self._writer.aclose()
        await self._reader.aclose()
