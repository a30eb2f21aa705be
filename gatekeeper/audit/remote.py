"""Remote sinks: a Redis Stream, and HTTP POST in OPA's decision-log upload format.

Each runs its own delivery task on the event loop with a bounded buffer of entries already
written to the local log: a batch is sent when it is full or ``flush_seconds`` after its first
entry, and a failed batch is retried with jittered exponential backoff (100 ms doubling, capped at
``max_backoff_seconds``, as OPA does). When the receiver stays away long enough for the buffer to
overflow, the oldest entries are dropped and reported to the decision log, which writes a ``gap``
entry (sink, count, first and last seq) into the chain: an outage is recorded, never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
from collections import deque
from typing import Any

import httpx

from gatekeeper._tasks import cancel_and_wait

log = logging.getLogger("gatekeeper.audit")

Item = tuple[int, bytes]  # (seq, canonical JSON line without "\n")


class RemoteSink:
    """Buffering, batching and retrying; subclasses implement ``_deliver``."""

    name = "remote"

    def __init__(
        self,
        *,
        buffer_events: int = 10_000,
        batch_events: int = 500,
        flush_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.buffer_events = buffer_events
        self.batch_events = batch_events
        self.flush_seconds = flush_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.delivered = 0
        self.failures = 0
        self._buffer: deque[Item] = deque()
        self._gap: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def offer(self, items: list[Item]) -> None:
        """Buffer entries for delivery (never blocks; overflow drops the oldest, counted)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        self._buffer.extend(items)
        while len(self._buffer) > self.buffer_events:
            seq, _ = self._buffer.popleft()
            self._record_drop(seq)
        if self._buffer:
            self._idle.clear()
            self._wake.set()
            if len(self._buffer) >= self.batch_events:
                self._full.set()

    def _record_drop(self, seq: int) -> None:
        if self._gap is None:
            self._gap = {"sink": self.name, "reason": "sink_outage", "dropped": 0}
            self._gap["first_seq"] = seq
        self._gap["dropped"] += 1
        self._gap["first_seq"] = min(self._gap["first_seq"], seq)
        self._gap["last_seq"] = max(self._gap.get("last_seq", seq), seq)

    def take_gap(self) -> dict[str, Any] | None:
        """What was dropped since the last call (for a ``gap`` entry), or ``None``."""
        gap, self._gap = self._gap, None
        return gap

    async def _run(self) -> None:
        attempt = 0
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._buffer) < self.batch_events and not self._closing:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_seconds)
            batch = [self._buffer.popleft() for _ in range(min(len(self._buffer), self._limit()))]
            failed = False
            try:
                sent = await self._deliver(batch)
            except Exception as exc:
                sent, failed = 0, True
                self.failures += 1
                log.warning("decision log sink %s failed (%s); will retry", self.name, exc)
            self.delivered += sent
            unsent = batch[sent:]
            if unsent:
                self._buffer.extendleft(reversed(unsent))
                while len(self._buffer) > self.buffer_events:
                    self._record_drop(self._buffer.popleft()[0])
            if not failed:
                attempt = 0
                continue
            delay = min(self.max_backoff_seconds, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            await asyncio.sleep(delay)

    def _limit(self) -> int:
        return self.batch_events

    async def _deliver(self, batch: list[Item]) -> int:
        """Send ``batch`` in order; return how many of its first entries were delivered."""
        raise NotImplementedError

    async def drain(self, seconds: float) -> bool:
        """Wait until everything offered so far is delivered (``False`` on timeout)."""
        if self._task is None:
            return True
        self._closing = True
        self._full.set()
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        finally:
            self._closing = False
        return True

    async def aclose(self, seconds: float = 5.0) -> None:
        """Deliver what is buffered (for up to ``seconds``), then stop."""
        if not await self.drain(seconds):
            log.error(
                "decision log sink %s: %d entries undelivered at shutdown (they are in the "
                "local log)",
                self.name,
                len(self._buffer),
            )
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._close_client()

    async def _close_client(self) -> None:
        return None


class RedisStreamSink(RemoteSink):
    """``XADD``s each entry to a Redis Stream (fields ``seq`` and ``event``), one transaction
    per batch, trimming the stream to about ``maxlen`` entries."""

    name = "redis"

    def __init__(self, url: str, stream: str, *, maxlen: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        from redis.asyncio import Redis

        self.stream = stream
        self.maxlen = maxlen
        self._redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def _deliver(self, batch: list[Item]) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            for seq, line in batch:
                pipe.xadd(
                    self.stream,
                    {"seq": seq, "event": line},
                    maxlen=self.maxlen,
                    approximate=True,
                )
            await pipe.execute()
        return len(batch)

    async def _close_client(self) -> None:
        await self._redis.aclose()


class HttpUploadSink(RemoteSink):
    """POSTs batches as OPA does: a gzip-compressed JSON array of events, ``Content-Encoding:
    gzip``, any 2xx is success; a batch's compressed size stays under ``upload_size_limit_bytes``
    (a single entry larger than that is still sent alone)."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        upload_size_limit_bytes: int = 32768,
        timeout_seconds: float = 10.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.url = url
        self.upload_size_limit_bytes = upload_size_limit_bytes
        self._ratio = 8.0  # uncompressed / compressed, learned from each upload
        self._client = httpx.AsyncClient(
            timeout=timeout_seconds,
            headers={
                "content-type": "application/json",
                "content-encoding": "gzip",
                **(headers or {}),
            },
        )

    async def _deliver(self, batch: list[Item]) -> int:
        count, body = await asyncio.to_thread(self._encode, batch)
        response = await self._client.post(self.url, content=body)
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"{self.url} answered {response.status_code}")
        return count

    def _encode(self, batch: list[Item]) -> tuple[int, bytes]:
        budget = self.upload_size_limit_bytes * self._ratio
        count, size = 0, 0
        for _, line in batch:
            if count and size + len(line) + 1 > budget:
                break
            count, size = count + 1, size + len(line) + 1
        while True:
            raw = b"[" + b",".join(line for _, line in batch[:count]) + b"]"
            body = gzip.compress(raw, compresslevel=6)
            if len(body) <= self.upload_size_limit_bytes or count == 1:
                break
            count = max(1, count // 2)
        self._ratio = max(1.0, 0.9 * len(raw) / max(1, len(body)))
        return count, body

    async def _close_client(self) -> None:
        await self._client.aclose()
