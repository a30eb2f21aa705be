"""The decision log: events leave the request path through a bounded queue.

``record`` never blocks and never raises: when the queue is full the event is dropped and
counted (``dropped``), and the count is written into the log as a ``gap`` event as soon as there
is room, so a reader can see that events are missing and how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from gatekeeper.audit.events import new_decision_id, rfc3339_ns

log = logging.getLogger("gatekeeper.audit")


class Sink(Protocol):
    """Somewhere events are written, in batches, off the event loop."""

    def write_batch(self, lines: list[bytes]) -> None: ...

    def close(self) -> None: ...


class JsonlFileSink:
    """Appends one JSON document per line to a file (created with its directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def write_batch(self, lines: list[bytes]) -> None:
        self._file.write(b"".join(lines))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class DecisionLog:
    """Buffers events and writes them to a sink from a background task."""

    def __init__(self, sink: Sink, *, queue_size: int = 10_000, batch_size: int = 512) -> None:
        self.sink = sink
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self._unreported_drops = 0

    def _ensure_started(self) -> asyncio.Queue[dict[str, Any]]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="decision-log")
        return self._queue

    def record(self, event: dict[str, Any]) -> None:
        """Queue one event; drop and count it if the queue is full."""
        queue = self._ensure_started()
        if self._unreported_drops and queue.qsize() < self._queue_size - 1:
            gap = {
                "decision_id": new_decision_id(),
                "timestamp": rfc3339_ns(time.time_ns()),
                "gatekeeper": {"gap": {"reason": "queue_full", "dropped": self._unreported_drops}},
            }
            queue.put_nowait(gap)
            self._unreported_drops = 0
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            self._unreported_drops += 1

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            first = await queue.get()
            batch = [first]
            while len(batch) < self._batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            lines = [orjson.dumps(e) + b"\n" for e in batch]
            try:
                await asyncio.to_thread(self.sink.write_batch, lines)
                self.written += len(batch)
            except Exception:
                log.exception("decision log write failed; %d events lost", len(batch))
                self.dropped += len(batch)
                self._unreported_drops += len(batch)
            finally:
                for _ in batch:
                    queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued event is written."""
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self) -> None:
        """Write what is queued, stop the writer and close the sink."""
        if self._queue is not None and self._task is not None:
            await self.flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._queue = None
        self._task = None
        await asyncio.to_thread(self.sink.close)
