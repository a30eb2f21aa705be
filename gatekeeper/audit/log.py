"""The decision log: events leave the request path through a bounded queue into a hash chain.

``record`` never blocks and never raises: when the queue is full the event is dropped and
counted (``dropped``), and the count (with the dropped decision ids) is written into the chain as
a ``gap`` entry, so a reader can see that events are missing and which. ``record_durable`` is
the ``durable`` mode: it returns once the event is written and fsynced, or raises
``DecisionLogUnavailable``; events waiting together share one fsync (group commit).

One writer task owns the chain: it masks each event, seals it (seq + previous hash), writes the
batch to the local sinks from a thread, fsyncs when a durable event or a checkpoint needs it,
signs a checkpoint every ``checkpoint_every`` entries, every ``checkpoint_seconds``, on rotation
and on shutdown, then hands the sealed entries to the remote sinks. On start it continues the
chain from the last entry on disk and writes a ``restart`` entry (a fresh log starts with
``start``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from gatekeeper.audit.chain import Chain, ChainHead, checkpoint_entry, log_entry
from gatekeeper.audit.events import rfc3339_ns
from gatekeeper.audit.keys import Signer
from gatekeeper.audit.masking import Masker
from gatekeeper.audit.remote import Item, RemoteSink
from gatekeeper.audit.sinks import ChainStore, JsonlFileSink, Recovered, Sink, StdoutSink
from gatekeeper.errors import GatekeeperError

log = logging.getLogger("gatekeeper.audit")

__all__ = ["DecisionLog", "DecisionLogUnavailable", "JsonlFileSink", "Sink", "StdoutSink"]

_CLOSE: dict[str, Any] = {}
_MAX_GAP_IDS = 100

_QueueItem = tuple[dict[str, Any], "asyncio.Future[None] | None"]


class DecisionLogUnavailable(GatekeeperError):
    """A durable event could not be made durable in time; the request is refused."""

    status = 503
    code = "decision_log_unavailable"

    def __init__(self, message: str, *, pending: bool = False) -> None:
        super().__init__(message)
        #: The event is queued and may still be written (the response was withheld anyway).
        self.pending = pending


class DecisionLog:
    """Buffers events and writes them, chained, to its sinks from a background task."""

    def __init__(
        self,
        sink: Sink,
        *,
        queue_size: int = 10_000,
        batch_size: int = 512,
        sinks: Sequence[Sink] = (),
        remote: Sequence[RemoteSink] = (),
        masker: Masker | None = None,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        labels: dict[str, str] | None = None,
        remote_drain_seconds: float = 5.0,
    ) -> None:
        self.sink = sink
        self.sinks = [sink, *sinks]
        self.remote = list(remote)
        self.masker = masker
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.labels = dict(labels or {})
        self.remote_drain_seconds = remote_drain_seconds
        self._queue: asyncio.Queue[_QueueItem] | None = None
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None
        self._chain = Chain()
        self._last_checkpoint_at = time.monotonic()
        self._drops: dict[str, Any] | None = None
        self.written = 0
        self.dropped = 0
        self.durable_failures = 0

    @property
    def head(self) -> ChainHead:
        """The chain head: the last written entry's seq and hash."""
        return self._chain.head

    def _ensure_started(self) -> asyncio.Queue[_QueueItem]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="decision-log")
        return self._queue

    def record(self, event: dict[str, Any]) -> None:
        """Queue one event (the log takes ownership of it); drop and count it if full."""
        queue = self._ensure_started()
        try:
            queue.put_nowait((event, None))
        except asyncio.QueueFull:
            self.dropped += 1
            now = rfc3339_ns(time.time_ns())
            if self._drops is None:
                self._drops = {"reason": "queue_full", "dropped": 0, "since": now}
                self._drops["decision_ids"] = []
            self._drops["dropped"] += 1
            self._drops["until"] = now
            if len(self._drops["decision_ids"]) < _MAX_GAP_IDS and "decision_id" in event:
                self._drops["decision_ids"].append(event["decision_id"])

    async def record_durable(self, event: dict[str, Any], seconds: float) -> None:
        """Write ``event`` and fsync it before returning (group commit with other waiters).

        Raises ``DecisionLogUnavailable`` if that cannot be done within ``seconds``.
        """
        queue = self._ensure_started()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        future: asyncio.Future[None] = loop.create_future()
        try:
            await asyncio.wait_for(queue.put((event, future)), seconds)
        except TimeoutError:
            self.durable_failures += 1
            raise DecisionLogUnavailable("the decision log queue stayed full") from None
        try:
            await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
        except TimeoutError:
            self.durable_failures += 1
            raise DecisionLogUnavailable(
                "the decision event was not durable in time", pending=True
            ) from None
        except Exception as exc:
            self.durable_failures += 1
            raise DecisionLogUnavailable(f"the decision event was not written: {exc}") from exc

    # -- the writer -----------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        await self._write(await asyncio.to_thread(self._opening_entries), [])
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), self._until_checkpoint())
            except TimeoutError:
                await self._write([], [], checkpoint="timer")
                continue
            batch = [first]
            while len(batch) < self._batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            closing = any(event is _CLOSE for event, _ in batch)
            events = [event for event, _ in batch if event is not _CLOSE]
            futures = [f for _, f in batch if f is not None]
            try:
                await self._write(self._gap_entries() + events, futures, count=len(events))
                if closing:
                    await self._write_final()
            finally:
                for _ in batch:
                    queue.task_done()
            if closing:
                return

    def _until_checkpoint(self) -> float | None:
        if self.signer is None or not self.checkpoint_seconds or not self.head.since_checkpoint:
            return None
        return max(0.0, self._last_checkpoint_at + self.checkpoint_seconds - time.monotonic())

    def _gap_entries(self) -> list[dict[str, Any]]:
        gaps = []
        if self._drops is not None:
            gaps.append(log_entry("gap", self.labels, **self._drops))
            self._drops = None
        for sink in self.remote:
            gap = sink.take_gap()
            if gap is not None:
                gaps.append(log_entry("gap", self.labels, **gap))
        return gaps

    async def _write(
        self,
        entries: list[dict[str, Any]],
        futures: list[asyncio.Future[None]],
        *,
        count: int = 0,
        checkpoint: str | None = None,
    ) -> None:
        try:
            items = await asyncio.to_thread(self._write_sync, entries, bool(futures), checkpoint)
        except Exception as exc:
            log.exception("decision log write failed; %d events lost", count)
            self.dropped += count
            if self._drops is None:
                self._drops = {"reason": "write_error", "dropped": 0, "error": str(exc)}
            self._drops["dropped"] = self._drops.get("dropped", 0) + count
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        self.written += count
        for future in futures:
            if not future.done():
                future.set_result(None)
        for sink in self.remote:
            sink.offer(items)

    def _write_sync(
        self, entries: list[dict[str, Any]], sync: bool, checkpoint: str | None
    ) -> list[Item]:
        """Mask, seal and write ``entries`` (runs in a worker thread, one at a time)."""
        store = self.sink if isinstance(self.sink, ChainStore) else None
        lines: list[bytes] = []
        items: list[Item] = []
        checkpoints: list[bytes] = []
        if entries and store is not None and store.rotation_due():
            # Each rotated file ends with a checkpoint: it can be archived as a sealed unit.
            if self.signer is not None and self.head.since_checkpoint:
                snapshot = self._chain.head
                self._seal_checkpoint("rotation", lines, items, checkpoints)
                self._store_lines(lines, True, checkpoints, snapshot)
                lines, checkpoints = [], []
            store.rotate()
        snapshot = self._chain.head
        for entry in entries:
            try:
                if self.masker is not None:
                    self.masker.apply(entry)
                line = self._chain.seal(entry)
            except Exception as exc:  # never write an event that could not be masked or encoded
                line = self._chain.seal(_unwritable(entry, exc))
            lines.append(line + b"\n")
            items.append((self._chain.head.seq, line))
            if self.signer is not None and self.head.since_checkpoint >= self.checkpoint_every:
                self._seal_checkpoint("interval", lines, items, checkpoints)
        # A shutdown checkpoint is written even right after another one: it marks a clean
        # close, which the next start and the verifier report.
        if (
            checkpoint is not None
            and self.signer is not None
            and (self.head.since_checkpoint or checkpoint == "shutdown")
        ):
            self._seal_checkpoint(checkpoint, lines, items, checkpoints)
        self._store_lines(lines, sync, checkpoints, snapshot)
        return items

    def _seal_checkpoint(
        self, reason: str, lines: list[bytes], items: list[Item], checkpoints: list[bytes]
    ) -> None:
        assert self.signer is not None
        line = self._chain.seal(checkpoint_entry(self.head, self.signer, reason, self.labels))
        lines.append(line + b"\n")
        items.append((self.head.seq, line))
        checkpoints.append(line + b"\n")
        self._last_checkpoint_at = time.monotonic()

    def _store_lines(
        self, lines: list[bytes], sync: bool, checkpoints: list[bytes], snapshot: ChainHead
    ) -> None:
        if not lines:
            return
        try:
            self.sink.write_batch(lines)
        except BaseException:
            self._chain.head = snapshot  # nothing of these lines is in the log
            raise
        store = self.sink if isinstance(self.sink, ChainStore) else None
        if store is not None and (sync or checkpoints):
            store.sync()
            for line in checkpoints:
                store.write_checkpoint(line)
        for extra in self.sinks[1:]:
            try:
                extra.write_batch(lines)
            except Exception:
                log.exception("decision log sink %s failed", type(extra).__name__)

    def _opening_entries(self) -> list[dict[str, Any]]:
        """Recover the chain from disk; the ``start`` or ``restart`` entry to write first."""
        key = self.signer.fingerprint if self.signer is not None else None
        try:
            found = self.sink.recover() if isinstance(self.sink, ChainStore) else Recovered()
        except Exception as exc:
            log.exception("could not read the end of the decision log; starting a new chain")
            return [log_entry("start", self.labels, key=key, recovery_error=str(exc))]
        last = found.last_entry
        gk = last.get("gatekeeper") if last is not None else None
        if not isinstance(gk, dict) or not isinstance(gk.get("seq"), int):
            extra = {"unchained_predecessor": True} if last is not None else {}
            return [log_entry("start", self.labels, key=key, torn_tail=found.torn_tail, **extra)]
        assert found.last_hash is not None
        clean = gk.get("kind") == "checkpoint" and gk["checkpoint"].get("reason") == "shutdown"
        self._chain.head = ChainHead(
            seq=gk["seq"],
            hash=found.last_hash,
            last_checkpoint=found.last_checkpoint,
            since_checkpoint=0 if gk.get("kind") == "checkpoint" else 1,
        )
        return [
            log_entry(
                "restart",
                self.labels,
                previous_seq=gk["seq"],
                previous_hash=found.last_hash,
                clean_shutdown=clean,
                torn_tail=found.torn_tail,
                key=key,
            )
        ]

    async def _write_final(self) -> None:
        for sink in self.remote:
            await sink.drain(self.remote_drain_seconds)
        await self._write(self._gap_entries(), [], checkpoint="shutdown")

    # -- lifecycle ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every queued event is written."""
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self) -> None:
        """Write what is queued, sign a shutdown checkpoint, stop the writer, close the sinks."""
        if self._queue is not None and self._task is not None:
            if not self._task.done():
                await self._queue.put((_CLOSE, None))
            try:
                await self._task
            except Exception:
                log.exception("the decision log writer failed")
        for sink in self.remote:
            await sink.aclose(self.remote_drain_seconds)
        self._queue = None
        self._task = None
        for local in self.sinks:
            await asyncio.to_thread(local.close)


def _unwritable(entry: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """What is logged in place of an event that cannot be written as JSON."""
    return {
        "decision_id": str(entry.get("decision_id", "")),
        "timestamp": str(entry.get("timestamp", rfc3339_ns(time.time_ns()))),
        "gatekeeper": {"kind": "decision", "unwritable": str(exc)},
    }
