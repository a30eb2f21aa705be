"""The decision log's writer thread: it owns the chain, seals each batch and writes it.

One long-lived thread per ``DecisionLog`` blocks on a ``queue.SimpleQueue`` (so ``record`` costs
one ``put``, and the thread is woken once per batch), drains everything queued (up to
``batch_size``) into one batch — group commit —, masks each event, seals it (seq + previous
hash), writes the batch to the local sinks, fsyncs when a durable event or a checkpoint needs it,
and signs a checkpoint every ``checkpoint_every`` entries, ``checkpoint_seconds`` after the first
unsigned entry (the wait for the next batch times out, so an idle log is signed too), on
rotation and at shutdown. When events trickle in one at a time but more than one per
``linger_seconds``, the thread waits that long before taking the next batch, so that a few are
written together (one wake-up and one write each, instead of one per event); a durable event,
``flush`` or ``aclose`` ends the wait at once, and so does a full batch (or half the queue)
waiting, so the wait never makes the queue overflow.

Nothing goes back to the event loop for an ordinary event: only the results of durable waiters
and of ``flush``/``aclose`` markers, and, when remote sinks are configured, the sealed entries
they deliver — each at most once per batch, through ``call_soon_threadsafe``. Drops counted on
the event loop's side (queue full) and on the thread's side (write errors) meet in one dict
under a lock, taken only on those rare paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from typing import Any

from gatekeeper.audit.canonical import FORMAT
from gatekeeper.audit.chain import Chain, ChainHead, checkpoint_entry, log_entry
from gatekeeper.audit.events import rfc3339_ns
from gatekeeper.audit.keys import Signer
from gatekeeper.audit.masking import Masker
from gatekeeper.audit.remote import Item, RemoteSink
from gatekeeper.audit.sinks import ChainStore, JsonlFileSink, Recovered, Sink
from gatekeeper.audit.witness import WitnessPublisher, witness_record

log = logging.getLogger("gatekeeper.audit")

#: Queue markers (compared by identity): complete the future once everything before is written;
#: write the final entries and stop.
FLUSH: dict[str, Any] = {}
CLOSE: dict[str, Any] = {}

QueueItem = tuple[dict[str, Any], "asyncio.Future[None] | None"]


class WriterStopped(RuntimeError):
    """The writer thread ended before it could write an event."""


class ChainWriter:
    """The writer-thread half of ``DecisionLog`` (see the module docstring).

    Thread ownership: ``_enqueued``, ``_waiters_put`` and ``_dropped_full`` are written by the
    event loop's thread only; ``_taken``, ``_waiters_taken``, ``written``, ``_dropped_write`` and
    the chain by the writer thread only (each counter has one writer, so no update is lost);
    ``_drops`` and ``_remote_gaps`` by both, under ``_lock``.
    """

    sink: Sink
    sinks: list[Sink]
    remote: list[RemoteSink]
    masker: Masker | None
    signer: Signer | None
    checkpoint_every: int
    checkpoint_seconds: float
    labels: dict[str, str]
    witness: WitnessPublisher | None

    def _init_writer(self, queue_size: int, batch_size: int, linger_seconds: float) -> None:
        self._batch_size = batch_size
        #: ``record`` ends a linger when the queue reaches this depth: a full batch, or half
        #: the queue, whichever comes first.
        self._wake_depth = max(0, min(batch_size, queue_size // 2) - 1)
        self._linger = linger_seconds
        self._last_batch_at = 0.0
        self._busy = False
        #: Waiters put (by the event loop's thread) and taken (by the writer): the writer does
        #: not linger while one is queued.
        self._waiters_put = 0
        self._waiters_taken = 0
        #: Set when a waiter (durable event, flush, close) or a full batch is queued: it ends
        #: a linger early.
        self._urgent = threading.Event()
        self._queue: queue.SimpleQueue[QueueItem] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._drops: dict[str, Any] | None = None
        self._remote_gaps: list[dict[str, Any]] = []
        self._enqueued = 0
        self._taken = 0
        self._dropped_write = 0
        self._chain = Chain()
        self._last_checkpoint_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_remote: deque[Item] = deque()
        self._remote_pending = False
        self._dead = False
        self.written = 0

    # -- the thread -----------------------------------------------------------------------

    def _run_writer(self, ended: asyncio.Future[None] | None) -> None:
        """The writer thread's body: write each batch as it comes, until the close marker."""
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        closing = False
        try:
            self._commit(self._opening_entries(), [], 0)
            while not closing:
                if self._busy:
                    self._linger_wait()
                batch: list[QueueItem] = []
                self._drain(batch)
                if not batch:
                    try:
                        batch.append(get(timeout=self._until_checkpoint()))
                    except queue.Empty:
                        self._commit(self._gap_entries(), [], 0, checkpoint="timer")
                        continue
                    self._drain(batch)
                self._taken += len(batch)
                now = time.monotonic()
                # Events trickle in (more than one per linger, but not a full batch's worth):
                # before the next batch, wait for a few more to write them together.
                self._busy = (
                    bool(self._linger)
                    and len(batch) < self._batch_size
                    and (len(batch) > 1 or now - self._last_batch_at < self._linger)
                )
                self._last_batch_at = now
                closing = self._write_batch(batch)
        except BaseException:
            log.exception("the decision log writer stopped")
        finally:
            self._dead = True  # from here on, a waiter put into the queue is answered below
            leftover: list[asyncio.Future[None]] = []
            while True:
                try:
                    _, future = get_nowait()
                except queue.Empty:
                    break
                if future is not None:
                    leftover.append(future)
            self._settle(leftover, WriterStopped("the decision log writer has stopped"), [])
            if ended is not None:
                self._settle([], None, [ended])

    def _linger_wait(self) -> None:
        """Wait ``linger`` for more events, unless a waiter (a durable event, ``flush``,
        ``aclose``) is queued or comes: group commit at light load, where each event would
        otherwise cost a wake-up and a write of its own."""
        self._urgent.clear()  # a waiter or a full batch queued from now on sets it again
        already = self._waiters_put != self._waiters_taken
        if not already and self._enqueued - self._taken < self._wake_depth:
            self._urgent.wait(self._linger)

    def _drain(self, batch: list[QueueItem]) -> None:
        get_nowait = self._queue.get_nowait
        while len(batch) < self._batch_size:
            try:
                batch.append(get_nowait())
            except queue.Empty:
                return

    def _write_batch(self, batch: list[QueueItem]) -> bool:
        """Write one batch taken off the queue; True if it held the close marker."""
        events: list[dict[str, Any]] = []
        durable: list[asyncio.Future[None]] = []
        waiters: list[asyncio.Future[None]] = []
        closing = False
        for event, future in batch:
            if event is FLUSH or event is CLOSE:
                closing = closing or event is CLOSE
                self._waiters_taken += 1
                if future is not None:
                    waiters.append(future)
                continue
            events.append(event)
            if future is not None:
                self._waiters_taken += 1
                durable.append(future)
        # Until the write has returned, a waiter would be told of a failure, never of success.
        error: BaseException | None = WriterStopped("the decision log writer has stopped")
        try:
            entries = self._gap_entries() + events
            # Under a steady trickle the wait for the next batch never times out: sign here
            # too once the interval is over, so no entry stays unsigned much longer than it.
            due = self._until_checkpoint() == 0.0 and not closing
            if entries:
                error = self._commit(entries, durable, len(events), "timer" if due else None)
            elif due:
                self._commit([], [], 0, checkpoint="timer")
                error = None
            else:
                error = None
            if closing:
                self._commit(self._gap_entries(), [], 0, checkpoint="shutdown")
        finally:
            self._settle(durable, error, waiters)
        return closing

    @property
    def head(self) -> ChainHead:
        """The chain head: the last written entry's seq and hash."""
        return self._chain.head

    def _until_checkpoint(self) -> float | None:
        if self.signer is None or not self.checkpoint_seconds or not self.head.since_checkpoint:
            return None
        return max(0.0, self._last_checkpoint_at + self.checkpoint_seconds - time.monotonic())

    def _gap_entries(self) -> list[dict[str, Any]]:
        if self._drops is None and not self._remote_gaps:
            return []
        with self._lock:
            drops, self._drops = self._drops, None
            remote, self._remote_gaps = self._remote_gaps, []
        gaps = [log_entry("gap", self.labels, **drops)] if drops is not None else []
        return gaps + [log_entry("gap", self.labels, **gap) for gap in remote]

    def _commit(
        self,
        entries: list[dict[str, Any]],
        durable: list[asyncio.Future[None]],
        count: int,
        checkpoint: str | None = None,
    ) -> Exception | None:
        """Write ``entries`` (``count`` of them events); the error that lost them, if any."""
        try:
            items = self._write_sync(entries, bool(durable), checkpoint)
        except Exception as exc:
            log.exception("decision log write failed; %d events lost", count)
            self._dropped_write += count
            with self._lock:
                if self._drops is None:
                    self._drops = {"reason": "write_error", "dropped": 0, "error": str(exc)}
                self._drops["dropped"] = self._drops.get("dropped", 0) + count
            return exc
        self.written += count
        if items and self.remote and self._loop is not None:
            self._hand_to_remote(self._loop, items)
        return None

    def _settle(
        self,
        durable: list[asyncio.Future[None]],
        error: BaseException | None,
        waiters: list[asyncio.Future[None]],
    ) -> None:
        """Complete futures from the writer thread: one hop per event loop (usually one)."""
        if not durable and not waiters:
            return
        for loop in {future.get_loop() for future in (*durable, *waiters)}:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, loop, durable, error, waiters)

    # -- remote sinks: they run on the event loop ------------------------------------------

    def _hand_to_remote(self, loop: asyncio.AbstractEventLoop, items: list[Item]) -> None:
        self._to_remote.extend(items)
        if not self._remote_pending:  # one hop carries everything sealed until it runs
            self._remote_pending = True
            try:
                loop.call_soon_threadsafe(self._offer_remote)
            except RuntimeError:
                self._remote_pending = False

    def _offer_remote(self) -> None:
        """On the event loop: offer ``_to_remote`` to the remote sinks (``DecisionLog``)."""
        raise NotImplementedError

    # -- sealing and writing (the writer thread) -------------------------------------------

    def _write_sync(
        self, entries: list[dict[str, Any]], sync: bool, checkpoint: str | None
    ) -> list[Item]:
        """Mask, seal and write ``entries``; the sealed entries for the remote sinks."""
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
        rules = self.masker.batch_rules() if self.masker is not None and entries else []
        for entry in entries:
            try:
                if self.masker is not None:
                    self.masker.apply(entry, rules)
                line = self._chain.seal(entry)
            except Exception as exc:  # never write an event that could not be masked or encoded
                line = self._chain.seal(_unwritable(entry, exc))
            lines.append(line + b"\n")
            items.append((self.head.seq, line))
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
        line = self._chain.seal(
            checkpoint_entry(self.head, self.signer, reason, self.labels, self._chain.chain_id)
        )
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
        if self.witness is not None:
            for line in checkpoints:
                self._publish(line.rstrip(b"\n"))
        for extra in self.sinks[1:]:
            try:
                extra.write_batch(lines)
            except Exception:
                log.exception("decision log sink %s failed", type(extra).__name__)

    def _publish(self, checkpoint_line: bytes) -> None:
        """Hand a checkpoint to the witness publisher (it never blocks)."""
        assert self.witness is not None
        name = self.sink.path.name if isinstance(self.sink, JsonlFileSink) else "decisions"
        try:
            self.witness.submit(witness_record(name, checkpoint_line))
        except Exception:
            log.exception("decision log witness: could not build a checkpoint record")

    def _opening_entries(self) -> list[dict[str, Any]]:
        """Recover the chain from disk; the ``start`` or ``restart`` entry to write first."""
        key = self.signer.fingerprint if self.signer is not None else None
        policy = {
            "chain_id": self._chain.chain_id,
            "format": FORMAT,
            "checkpoint_every": self.checkpoint_every if self.signer is not None else None,
            "checkpoint_seconds": self.checkpoint_seconds if self.signer is not None else None,
        }
        try:
            found = self.sink.recover() if isinstance(self.sink, ChainStore) else Recovered()
        except Exception as exc:
            log.exception("could not read the end of the decision log; starting a new chain")
            return [log_entry("start", self.labels, key=key, recovery_error=str(exc), **policy)]
        last = found.last_entry
        gk = last.get("gatekeeper") if last is not None else None
        if not isinstance(gk, dict) or not isinstance(gk.get("seq"), int):
            extra = {"unchained_predecessor": True} if last is not None else {}
            return [
                log_entry(
                    "start", self.labels, key=key, torn_tail=found.torn_tail, **extra, **policy
                )
            ]
        assert found.last_hash is not None
        if found.chain_id is not None:
            self._chain.chain_id = policy["chain_id"] = found.chain_id
        if found.checkpoint_line is not None and self.witness is not None:
            self._publish(found.checkpoint_line)  # again: a crash may have kept it from it
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
                **policy,
            )
        ]


def _resolve(
    loop: asyncio.AbstractEventLoop,
    durable: list[asyncio.Future[None]],
    error: BaseException | None,
    waiters: list[asyncio.Future[None]],
) -> None:
    """On ``loop``: complete its durable waiters (with ``error`` if the write failed) and its
    flush/close waiters; a waiter that gave up (cancelled by its timeout) is skipped."""
    for future in durable:
        if future.get_loop() is loop and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
    for future in waiters:
        if future.get_loop() is loop and not future.done():
            future.set_result(None)


def _unwritable(entry: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """What is logged in place of an event that cannot be written as JSON."""
    return {
        "decision_id": str(entry.get("decision_id", "")),
        "timestamp": str(entry.get("timestamp", rfc3339_ns(time.time_ns()))),
        "gatekeeper": {"kind": "decision", "unwritable": str(exc)},
    }
