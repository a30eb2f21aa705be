"""The decision log's queue and writer thread: batches go from the queue to the ``Sealer``.

``ChainWriter`` is the part of ``DecisionLog`` that owns the queue and the thread that drains
it; the chain itself belongs to the ``Sealer`` it is given (``gatekeeper.audit.sealer``: in
this thread, or in a writer process of its own).

One long-lived thread per writer blocks on a ``queue.SimpleQueue`` (so recording an event costs
one ``put``, and the thread is woken once per batch), drains everything queued (up to
``batch_size``) into one batch — group commit — and hands it to the sealer, which masks and
seals each event (seq + previous hash), writes the batch to the local sinks, fsyncs when a
durable event or a checkpoint needs it, and signs a checkpoint every ``checkpoint_every``
entries. The thread also asks for a checkpoint ``checkpoint_seconds`` after the first unsigned
entry (the wait for the next batch times out, so an idle log is signed too), and at shutdown.
When events trickle in one at a time but more than one per ``linger_seconds``, the thread waits
that long before taking the next batch, so that a few are written together (one wake-up and one
write each, instead of one per event); a durable event, ``flush`` or ``aclose`` ends the wait at
once, and so does a full batch (or half the queue) waiting, so the wait never makes the queue
overflow.

Nothing goes back to the event loop for an ordinary event: only the results of durable waiters
and of ``flush``/``aclose`` markers, and, when the owner asked for them (``on_sealed``: the
remote sinks), the sealed entries — each at most once per batch, through
``call_soon_threadsafe``. Drops counted on the event loop's side (queue full) and on the
thread's side (write errors) meet in one dict under a lock, taken only on those rare paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gatekeeper.audit.chain import ChainHead, log_entry
from gatekeeper.audit.events import rfc3339_ns
from gatekeeper.audit.remote import Item
from gatekeeper.audit.sealer import Sealer, SealerStopped

log = logging.getLogger("gatekeeper.audit")

#: Queue markers (compared by identity): complete the future once everything before is written;
#: write the final entries and stop; the sealer has ended on its own (stop at once).
FLUSH: dict[str, Any] = {}
CLOSE: dict[str, Any] = {}
STOPPED: dict[str, Any] = {}

QueueItem = tuple[dict[str, Any], "asyncio.Future[None] | None"]

_MAX_GAP_IDS = 100
#: A full queue: ``offer`` waits for room at most this long, in steps of this length, and gives
#: up (drops the event) after this many steps in a row in which the writer took nothing.
_FULL_WAIT_SECONDS = 0.05
_FULL_WAIT_STEP_SECONDS = 0.0005
_FULL_WAIT_IDLE_STEPS = 10


class WriterStopped(RuntimeError):
    """The writer thread ended before it could write an event."""


class ChainWriter:
    """The queue and the writer thread of a ``DecisionLog`` (see the module docstring).

    ``offer`` and ``put_waiter`` are called from the event loop's thread. Thread ownership:
    ``_enqueued``, ``_waiters_put`` and ``_dropped_full`` are written by the event loop's
    thread only; ``_taken``, ``_waiters_taken``, ``written`` and ``_dropped_write`` by the
    writer thread only (each counter has one writer, so no update is lost); ``_drops`` and
    ``_remote_gaps`` by both, under ``_lock``. The sealer is only ever called from the writer
    thread.
    """

    def __init__(
        self,
        sealer: Sealer,
        *,
        queue_size: int = 10_000,
        batch_size: int = 512,
        linger_seconds: float = 0.05,
        labels: dict[str, str] | None = None,
        on_sealed: Callable[[list[Item]], None] | None = None,
    ) -> None:
        self.sealer = sealer
        self.queue_size = queue_size
        self.labels = dict(labels or {})
        #: Called on the event loop with the entries each batch sealed (the remote sinks).
        self.on_sealed = on_sealed
        self._batch_size = batch_size
        #: ``offer`` ends a linger when the queue reaches this depth: a full batch, or half
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
        self._dropped_full = 0
        self._dropped_write = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_remote: deque[Item] = deque()
        self._remote_pending = False
        self._thread: threading.Thread | None = None
        self._dead = False
        self.written = 0

    # -- the event loop's side -------------------------------------------------------------

    @property
    def head(self) -> ChainHead:
        """The chain head: the last written entry's seq and hash."""
        return self.sealer.head

    @property
    def dead(self) -> bool:
        """The writer thread has ended: nothing more is written."""
        return self._dead

    @property
    def dropped(self) -> int:
        """Events lost: dropped because the queue was full, or lost by a failed write."""
        return self._dropped_full + self._dropped_write

    def depth(self) -> int:
        """Events queued and not yet taken by the writer."""
        return max(0, self._enqueued - self._taken)

    def offer(self, event: dict[str, Any]) -> None:
        """Queue one event; drop it (counted, and named in a ``gap`` entry) if the queue stays
        full or the writer has ended."""
        depth = self._enqueued - self._taken
        if depth >= self.queue_size // 2:
            depth = self._make_room()
        if depth >= self.queue_size or self._dead:
            self.drop(event)
            return
        self._enqueued += 1
        self._queue.put((event, None))
        if depth == self._wake_depth:  # a lingering writer must not let the queue fill up
            self._urgent.set()

    def _make_room(self) -> int:
        """Backpressure, when the writer falls behind (the request path, on the event loop's
        thread, outpaces it for the interpreter lock): let the lock go once; and if the queue
        is full, wait for room while the writer drains it, at most ``_FULL_WAIT_SECONDS`` and
        only while it makes progress, before the event is dropped. The queue depth after."""
        time.sleep(0)
        depth = self._enqueued - self._taken
        if depth < self.queue_size:
            return depth
        deadline = time.monotonic() + _FULL_WAIT_SECONDS
        idle = 0
        while depth >= self.queue_size and not self._dead and idle < _FULL_WAIT_IDLE_STEPS:
            taken = self._taken
            time.sleep(_FULL_WAIT_STEP_SECONDS)
            idle = 0 if self._taken != taken else idle + 1
            depth = self._enqueued - self._taken
            if time.monotonic() >= deadline:
                break
        return depth

    def drop(self, event: dict[str, Any] | None) -> None:
        """Count an event that will not be written (named in the next ``gap`` entry)."""
        self._dropped_full += 1
        if event is None:  # recorded after close: there is no chain to report it in
            return
        now = rfc3339_ns(time.time_ns())
        with self._lock:  # the writer thread takes (and adds write errors to) the same record
            if self._drops is None:
                self._drops = {"reason": "queue_full", "dropped": 0, "since": now}
            drops = self._drops
            drops["dropped"] += 1
            drops.setdefault("since", now)
            drops["until"] = now
            ids = drops.setdefault("decision_ids", [])
            if len(ids) < _MAX_GAP_IDS and "decision_id" in event:
                ids.append(event["decision_id"])

    def put_waiter(self, item: dict[str, Any], future: asyncio.Future[None] | None) -> bool:
        """Queue an item whose future the writer completes; False if the writer has ended
        (after it has answered the waiters it found, it answers nothing more)."""
        self._enqueued += 1
        self._waiters_put += 1
        self._queue.put((item, future))
        self._urgent.set()  # ends the writer's linger, if it is waiting for more events
        return not self._dead

    def add_gaps(self, gaps: list[dict[str, Any]]) -> None:
        """Losses reported elsewhere (the remote sinks), for the writer's next ``gap`` entries."""
        if gaps:
            with self._lock:
                self._remote_gaps.extend(gaps)

    def start(self, ended: asyncio.Future[None] | None) -> None:
        """Start the writer thread; ``ended`` (if given) completes when it ends."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # recorded outside a loop: remote sinks cannot be fed
            self._loop = None
        self.sealer.watch(self._sealer_stopped)
        self._thread = threading.Thread(
            target=self._run, args=(ended,), name="decision-log", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the writer thread (after ``CLOSE`` is queued)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _sealer_stopped(self) -> None:
        """From any thread: the sealer ended on its own; the writer ends too."""
        self._queue.put((STOPPED, None))
        self._urgent.set()

    # -- the thread -----------------------------------------------------------------------

    def _run(self, ended: asyncio.Future[None] | None) -> None:
        """The writer thread's body: write each batch as it comes, until the close marker."""
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        closing = False
        try:
            self._commit(self.sealer.start, [], 0)
            while not closing:
                if self._busy:
                    self._linger_wait()
                batch: list[QueueItem] = []
                self._drain(batch)
                if not batch:
                    try:
                        batch.append(get(timeout=self.sealer.until_checkpoint()))
                    except queue.Empty:
                        self._commit_entries(self._gap_entries(), [], 0, "timer")
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
            with contextlib.suppress(Exception):
                self.sealer.stop()
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
        closing = stopped = False
        for event, future in batch:
            if event is STOPPED:
                stopped = True
                continue
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
            if stopped:
                raise SealerStopped("the decision log's sealer has stopped")
            entries = self._gap_entries() + events
            # Under a steady trickle the wait for the next batch never times out: sign here
            # too once the interval is over, so no entry stays unsigned much longer than it.
            due = self.sealer.until_checkpoint() == 0.0 and not closing
            if entries:
                checkpoint = "timer" if due else None
                error = self._commit_entries(entries, durable, len(events), checkpoint)
            elif due:
                self._commit_entries([], [], 0, "timer")
                error = None
            else:
                error = None
            if closing:
                self._commit_entries(self._gap_entries(), [], 0, "shutdown")
        finally:
            self._settle(durable, error, waiters)
        return closing

    def _gap_entries(self) -> list[dict[str, Any]]:
        if self._drops is None and not self._remote_gaps:
            return []
        with self._lock:
            drops, self._drops = self._drops, None
            remote, self._remote_gaps = self._remote_gaps, []
        gaps = [log_entry("gap", self.labels, **drops)] if drops is not None else []
        return gaps + [log_entry("gap", self.labels, **gap) for gap in remote]

    def _commit_entries(
        self,
        entries: list[dict[str, Any]],
        durable: list[asyncio.Future[None]],
        count: int,
        checkpoint: str | None = None,
    ) -> Exception | None:
        """Write ``entries`` (``count`` of them events); the error that lost them, if any."""
        sync = bool(durable)
        return self._commit(lambda: self.sealer.write(entries, sync, checkpoint), durable, count)

    def _commit(
        self,
        write: Callable[[], list[Item]],
        durable: list[asyncio.Future[None]],
        count: int,
    ) -> Exception | None:
        """Run ``write`` (it writes ``count`` events); the error that lost them, if any.
        ``SealerStopped`` ends the thread (nothing will be written any more)."""
        try:
            items = write()
        except SealerStopped:
            raise
        except Exception as exc:
            log.exception("decision log write failed; %d events lost", count)
            self._dropped_write += count
            with self._lock:
                if self._drops is None:
                    self._drops = {"reason": "write_error", "dropped": 0, "error": str(exc)}
                self._drops["dropped"] = self._drops.get("dropped", 0) + count
            return exc
        self.written += count
        if items and self.on_sealed is not None and self._loop is not None:
            self._hand_over(self._loop, items)
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

    # -- sealed entries go to the event loop (the remote sinks run there) ------------------

    def _hand_over(self, loop: asyncio.AbstractEventLoop, items: list[Item]) -> None:
        self._to_remote.extend(items)
        if not self._remote_pending:  # one hop carries everything sealed until it runs
            self._remote_pending = True
            try:
                loop.call_soon_threadsafe(self._deliver_sealed)
            except RuntimeError:
                self._remote_pending = False

    def _deliver_sealed(self) -> None:
        """On the event loop: hand what the writer sealed to ``on_sealed``."""
        self._remote_pending = False  # before taking: a later hand-over schedules a new hop
        pending = self._to_remote
        items = [pending.popleft() for _ in range(len(pending))]
        if self.on_sealed is not None:
            self.on_sealed(items)


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
