"""The decision log: events leave the request path through a bounded queue into a hash chain.

``record`` never blocks and never raises: it puts the event into a thread-safe queue (nothing
else; it does not schedule anything on the event loop). When the queue is full the event is
dropped and counted (``dropped``), and the count (with the dropped decision ids) is written into
the chain as a ``gap`` entry, so a reader can see that events are missing and which.
``record_durable`` is the ``durable`` mode: it returns once the event is written and fsynced,
or raises ``DecisionLogUnavailable``; events waiting together share one fsync (group commit).

One long-lived writer thread (``gatekeeper.audit.writer``) owns the chain: it takes everything
queued as one batch, masks each event, seals it (seq + previous hash), writes the batch to the
local sinks, fsyncs when a durable event or a checkpoint needs it, signs a checkpoint every
``checkpoint_every`` entries, every ``checkpoint_seconds``, on rotation and on shutdown, hands
each checkpoint to the witness publisher (``gatekeeper.audit.witness``, a thread of its own),
then hands the sealed entries to the remote sinks. On start it continues the chain from the last
entry on disk and writes a ``restart`` entry (a fresh log starts with ``start``). The thread
starts with the first event; a log that never recorded one writes nothing, even at close. A
log still running when the interpreter exits (``aclose`` was never awaited) is closed then:
what it holds is written, with its shutdown checkpoint.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from gatekeeper.audit.events import rfc3339_ns
from gatekeeper.audit.keys import Signer
from gatekeeper.audit.masking import Masker
from gatekeeper.audit.remote import RemoteSink
from gatekeeper.audit.sinks import JsonlFileSink, Sink, StdoutSink
from gatekeeper.audit.witness import WitnessPublisher
from gatekeeper.audit.writer import CLOSE, FLUSH, ChainWriter
from gatekeeper.errors import GatekeeperError
from gatekeeper.health import PartHealth

log = logging.getLogger("gatekeeper.audit")

__all__ = ["DecisionLog", "DecisionLogUnavailable", "JsonlFileSink", "Sink", "StdoutSink"]

_MAX_GAP_IDS = 100
#: A full queue: ``record`` waits for room at most this long, in steps of this length, and gives
#: up (drops the event) after this many steps in a row in which the writer took nothing.
_FULL_WAIT_SECONDS = 0.05
_FULL_WAIT_STEP_SECONDS = 0.0005
_FULL_WAIT_IDLE_STEPS = 10
#: How often a durable request looks for room in a full queue (rare: the writer is far behind).
_ROOM_POLL_SECONDS = 0.005

_NEW, _RUNNING, _CLOSED = "new", "running", "closed"
#: How long the interpreter's exit waits for the writer of a log that was never closed.
_EXIT_SECONDS = 5.0


class DecisionLogUnavailable(GatekeeperError):
    """A durable event could not be made durable in time; the request is refused."""

    status = 503
    code = "decision_log_unavailable"

    def __init__(self, message: str, *, pending: bool = False) -> None:
        super().__init__(message)
        #: The event is queued and may still be written (the response was withheld anyway).
        self.pending = pending


class DecisionLog(ChainWriter):
    """Buffers events and writes them, chained, to its sinks from a writer thread.

    ``record`` and ``record_durable`` are called from the event loop's thread (the request
    path); ``flush`` and ``aclose`` are awaited there too. ``queue_size`` bounds the events
    waiting for the writer; ``batch_size`` is the most it writes at once; ``linger_seconds`` is
    how long it waits to group events that trickle in one at a time (0: never waits; the wait
    ends early when a durable event, ``flush`` or ``aclose`` is waiting, or when a full batch
    or half the queue is waiting).
    """

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
        linger_seconds: float = 0.05,
        witness: WitnessPublisher | None = None,
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
        self.witness = witness
        self._queue_size = queue_size
        self._init_writer(queue_size, batch_size, linger_seconds)
        self._state = _NEW
        self._thread: threading.Thread | None = None
        #: Ends when the writer thread does (the health check looks at it).
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self._dropped_full = 0
        self.durable_failures = 0

    @property
    def dropped(self) -> int:
        """Events lost: dropped because the queue was full, or lost by a failed write."""
        return self._dropped_full + self._dropped_write

    async def health(self) -> PartHealth:
        """For /readyz: written and dropped counts; not ok once the writer stopped on its own."""
        detail: dict[str, Any] = {"written": self.written, "dropped": self.dropped}
        task = self._task  # ends with the writer thread; cancelled only at shutdown
        stopped = task is not None and task.done() and not task.cancelled()
        if stopped:
            detail["error"] = "the decision-log writer has stopped"
        return PartHealth(ok=not stopped, detail=detail)

    def queue_depth(self) -> int:
        """Events recorded and not yet taken by the writer."""
        return max(0, self._enqueued - self._taken)

    def record(self, event: dict[str, Any]) -> None:
        """Queue one event (the log takes ownership of it); drop and count it if full."""
        if self._state is not _RUNNING and not self._start():
            self._dropped_full += 1  # recorded after aclose: there is no chain to report it in
            return
        depth = self._enqueued - self._taken
        if depth >= self._queue_size // 2:
            depth = self._make_room()
        if depth >= self._queue_size:
            self._drop(event)
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
        if depth < self._queue_size:
            return depth
        deadline = time.monotonic() + _FULL_WAIT_SECONDS
        idle = 0
        while depth >= self._queue_size and not self._dead and idle < _FULL_WAIT_IDLE_STEPS:
            taken = self._taken
            time.sleep(_FULL_WAIT_STEP_SECONDS)
            idle = 0 if self._taken != taken else idle + 1
            depth = self._enqueued - self._taken
            if time.monotonic() >= deadline:
                break
        return depth

    def _drop(self, event: dict[str, Any]) -> None:
        self._dropped_full += 1
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

    async def record_durable(self, event: dict[str, Any], seconds: float) -> None:
        """Write ``event`` and fsync it before returning (group commit with other waiters).

        Raises ``DecisionLogUnavailable`` if that cannot be done within ``seconds``.
        """
        if self._state is not _RUNNING and not self._start():
            self.durable_failures += 1
            raise DecisionLogUnavailable("the decision log is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._enqueued - self._taken >= self._queue_size:
            if loop.time() >= deadline:
                self.durable_failures += 1
                raise DecisionLogUnavailable("the decision log queue stayed full")
            await asyncio.sleep(min(_ROOM_POLL_SECONDS, deadline - loop.time()))
        future: asyncio.Future[None] = loop.create_future()
        if not self._put_waiter(event, future):
            self.durable_failures += 1
            raise DecisionLogUnavailable("the decision log writer has stopped")
        try:
            async with asyncio.timeout_at(deadline):
                await future
        except TimeoutError:
            self.durable_failures += 1
            raise DecisionLogUnavailable(
                "the decision event was not durable in time", pending=True
            ) from None
        except Exception as exc:
            self.durable_failures += 1
            raise DecisionLogUnavailable(f"the decision event was not written: {exc}") from exc

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> bool:
        """Start the writer thread on first use; False once the log is closed."""
        if self._state is _NEW:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # recorded outside a loop: remote sinks cannot be fed
                self._loop = None
            ended: asyncio.Future[None] | None = None
            if self._loop is not None:
                ended = self._loop.create_future()
                self._task = self._loop.create_task(_watch(ended), name="decision-log")
            self._thread = threading.Thread(
                target=self._run_writer, args=(ended,), name="decision-log", daemon=True
            )
            self._state = _RUNNING
            self._thread.start()
            _RUNNING_LOGS.add(self)
        return self._state is _RUNNING

    def _put_waiter(self, item: dict[str, Any], future: asyncio.Future[None] | None) -> bool:
        """Queue an item whose future the writer completes; False if the writer has ended
        (after it has answered the waiters it found, it answers nothing more)."""
        self._enqueued += 1
        self._waiters_put += 1
        self._queue.put((item, future))
        self._urgent.set()  # ends the writer's linger, if it is waiting for more events
        return not self._dead

    async def flush(self) -> None:
        """Wait until every event recorded so far is written (and offered to remote sinks)."""
        if self._state is not _RUNNING or self._dead:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._put_waiter(FLUSH, future):
            await future

    async def aclose(self) -> None:
        """Write what is queued, sign a shutdown checkpoint, stop the writer, close the sinks.

        Safe to call more than once (later calls wait for the first one), and on a log that
        never started (its sinks are closed; nothing is written)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = asyncio.get_running_loop().create_future()
        try:
            if self._state is _RUNNING:
                await self._stop_writer()
            self._state = _CLOSED
            if self.witness is not None:  # the shutdown checkpoint is among what it publishes
                await asyncio.to_thread(self.witness.close, self.remote_drain_seconds)
            for sink in self.remote:
                await sink.aclose(self.remote_drain_seconds)
            for local in self.sinks:
                await asyncio.to_thread(local.close)
        finally:
            self._closing.set_result(None)

    async def _stop_writer(self) -> None:
        await self.flush()  # everything recorded so far is written and offered to remote sinks
        for sink in self.remote:
            await sink.drain(self.remote_drain_seconds)
        self._take_remote_gaps()  # what the sinks dropped is in the final entries
        self._state = _CLOSED  # from here on, record() drops: nothing would write it
        self._put_waiter(CLOSE, None)
        _RUNNING_LOGS.discard(self)
        if self._thread is not None:  # it writes the shutdown checkpoint, then ends
            await asyncio.to_thread(self._thread.join)
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            await task  # the thread told it so just before it ended

    def _offer_remote(self) -> None:
        """On the event loop: offer what the writer sealed to the remote sinks."""
        self._remote_pending = False  # before taking: a later hand-over schedules a new hop
        pending = self._to_remote
        items = [pending.popleft() for _ in range(len(pending))]
        for sink in self.remote:
            sink.offer(items)
        self._take_remote_gaps()

    def _take_remote_gaps(self) -> None:
        """What the remote sinks dropped, for the writer's next ``gap`` entries."""
        gaps = [gap for sink in self.remote if (gap := sink.take_gap()) is not None]
        if gaps:
            with self._lock:
                self._remote_gaps.extend(gaps)

    def _stop_at_exit(self) -> None:
        if self._state is _RUNNING and self._thread is not None:
            self._state = _CLOSED
            self._put_waiter(CLOSE, None)
            self._thread.join(_EXIT_SECONDS)
            if self.witness is not None:
                self.witness.close(_EXIT_SECONDS)


_RUNNING_LOGS: weakref.WeakSet[DecisionLog] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """At interpreter exit, stop the writers of logs that were never closed: what they hold is
    written, with a shutdown checkpoint, and no writer is left in the middle of a write while
    the interpreter finalizes (its thread is a daemon, so that it never holds the exit up)."""
    for log in list(_RUNNING_LOGS):
        log._stop_at_exit()


async def _watch(ended: asyncio.Future[None]) -> None:
    """Waits for the writer thread's end (the health check reports a log whose writer ended)."""
    await ended
