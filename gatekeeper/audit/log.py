"""The decision log: events leave the request path through a bounded queue into a hash chain.

``record`` never blocks and never raises: it puts the event into a thread-safe queue (nothing
else; it does not schedule anything on the event loop). When the queue is full the event is
dropped and counted (``dropped``), and the count (with the dropped decision ids) is written into
the chain as a ``gap`` entry, so a reader can see that events are missing and which.
``record_durable`` is the ``durable`` mode: it returns once the event is written and fsynced,
or raises ``DecisionLogUnavailable``; events waiting together share one fsync (group commit).

One long-lived writer thread (``gatekeeper.audit.writer``) takes everything queued as one batch
and hands it to the sealer that owns the chain (``gatekeeper.audit.sealer``: in that thread, or
in a writer process of the log's own, ``gatekeeper.audit.process``), which masks each event,
seals it (seq + previous hash), writes the batch to the local sinks, fsyncs when a durable
event or a checkpoint needs it, signs a checkpoint every ``checkpoint_every`` entries, every
``checkpoint_seconds``, on rotation and on shutdown, hands each checkpoint to the witness
publisher (``gatekeeper.audit.witness``, a thread of its own); the writer thread then hands the
sealed entries to the remote sinks. On start the sealer continues the chain from the last entry
on disk and writes a ``restart`` entry (a fresh log starts with ``start``). The thread starts
with the first event; a log that never recorded one writes nothing, even at close. A
log still running when the interpreter exits (``aclose`` was never awaited) is closed then:
what it holds is written, with its shutdown checkpoint.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Literal

from gatekeeper.audit.chain import ChainHead
from gatekeeper.audit.keys import Signer
from gatekeeper.audit.masking import Masker
from gatekeeper.audit.remote import Item, RemoteSink
from gatekeeper.audit.sealer import ChainSealer, Publish, Sealer, SealOptions, chain_name
from gatekeeper.audit.sinks import JsonlFileSink, Sink, StdoutSink
from gatekeeper.audit.witness import WitnessPublisher, witness_record
from gatekeeper.audit.writer import CLOSE, FLUSH, ChainWriter, WriterStopped
from gatekeeper.errors import GatekeeperError
from gatekeeper.health import PartHealth

log = logging.getLogger("gatekeeper.audit")

__all__ = ["DecisionLog", "DecisionLogUnavailable", "JsonlFileSink", "Sink", "StdoutSink"]

#: Where the log seals: in its writer thread, or in a writer process of its own.
SealerKind = Literal["thread", "process"]
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


class DecisionLog:
    """Buffers events and writes them, chained, to its sinks from a writer thread.

    ``record`` and ``record_durable`` are called from the event loop's thread (the request
    path); ``flush`` and ``aclose`` are awaited there too. ``queue_size`` bounds the events
    waiting for the writer; ``batch_size`` is the most it writes at once; ``linger_seconds`` is
    how long it waits to group events that trickle in one at a time (0: never waits; the wait
    ends early when a durable event, ``flush`` or ``aclose`` is waiting, or when a full batch
    or half the queue is waiting).

    The log is made of parts it owns: a ``ChainWriter`` (the queue and the writer thread,
    ``gatekeeper.audit.writer``) and the ``Sealer`` it writes through
    (``gatekeeper.audit.sealer``): a ``ChainSealer`` in the writer thread (``sealer="thread"``)
    or a ``ProcessSealer``, a writer process of the log's own (``sealer="process"``,
    ``gatekeeper.audit.process``). The log itself keeps the lifecycle, the durable mode, the
    remote sinks (fed on the event loop with what the writer sealed) and the witness.
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
        sealer: SealerKind = "thread",
    ) -> None:
        self.sink = sink
        self.sinks = [sink, *sinks]
        self.remote = list(remote)
        self.labels = dict(labels or {})
        self.remote_drain_seconds = remote_drain_seconds
        self.linger_seconds = linger_seconds
        self.witness = witness
        self.sealer_kind = sealer
        #: How the chain is sealed (the sealer's, whichever it is).
        self.options = SealOptions(
            masker=masker,
            signer=signer,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
            labels=self.labels,
            publish=_publisher(witness, chain_name(sink)) if witness is not None else None,
        )
        part: Sealer
        if sealer == "process":
            from gatekeeper.audit.process import ProcessSealer

            part = ProcessSealer(sink, self.options, sinks=sinks, remote=bool(self.remote))
        elif sealer == "thread":
            part = ChainSealer(sink, self.options, sinks=sinks)
        else:
            raise ValueError(f"unknown sealer {sealer!r} (thread or process)")
        self._queue_size = queue_size
        self.writer = ChainWriter(
            part,
            queue_size=queue_size,
            batch_size=batch_size,
            linger_seconds=linger_seconds,
            labels=self.labels,
            on_sealed=self._offer_remote if self.remote else None,
        )
        self._state = _NEW
        #: Ends when the writer thread does (the health check looks at it).
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self.durable_failures = 0

    @property
    def head(self) -> ChainHead:
        """The chain head: the last written entry's seq and hash."""
        return self.writer.head

    @property
    def written(self) -> int:
        """Events written to the chain."""
        return self.writer.written

    @property
    def dropped(self) -> int:
        """Events lost: dropped because the queue was full, or lost by a failed write."""
        return self.writer.dropped

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
        return self.writer.depth()

    def record(self, event: dict[str, Any]) -> None:
        """Queue one event (the log takes ownership of it); drop and count it if full."""
        if self._state is not _RUNNING and not self._start():
            self.writer.drop(None)  # recorded after aclose: there is no chain to report it in
            return
        self.writer.offer(event)

    async def record_durable(self, event: dict[str, Any], seconds: float) -> None:
        """Write ``event`` and fsync it before returning (group commit with other waiters).

        Raises ``DecisionLogUnavailable`` if that cannot be done within ``seconds``.
        """
        if self._state is not _RUNNING and not self._start():
            self.durable_failures += 1
            raise DecisionLogUnavailable("the decision log is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        writer = self.writer
        while writer.depth() >= self._queue_size and not writer.dead:
            if loop.time() >= deadline:
                self.durable_failures += 1
                raise DecisionLogUnavailable("the decision log queue stayed full")
            await asyncio.sleep(min(_ROOM_POLL_SECONDS, deadline - loop.time()))
        future: asyncio.Future[None] = loop.create_future()
        if not writer.put_waiter(event, future):
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
            ended: asyncio.Future[None] | None = None
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # recorded outside a loop: remote sinks cannot be fed
                loop = None
            if loop is not None:
                ended = loop.create_future()
                self._task = loop.create_task(_watch(ended), name="decision-log")
            self._state = _RUNNING
            self.writer.start(ended)
            _RUNNING_LOGS.add(self)
        return self._state is _RUNNING

    async def prepare(self) -> None:
        """Ahead of the first event (at start-up): have the sealer ready, so that the first
        events do not wait for it (the writer process boots). Writes nothing."""
        if self._state is _NEW:
            await asyncio.to_thread(self.writer.sealer.prepare)

    async def flush(self) -> None:
        """Wait until every event recorded so far is written (and offered to remote sinks)."""
        if self._state is not _RUNNING or self.writer.dead:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.writer.put_waiter(FLUSH, future):
            with contextlib.suppress(WriterStopped):  # it ended: nothing more can be written
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
            else:
                await asyncio.to_thread(self.writer.sealer.stop)
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
        self.writer.put_waiter(CLOSE, None)
        _RUNNING_LOGS.discard(self)
        await asyncio.to_thread(self.writer.join)  # it writes the shutdown checkpoint, ends
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            await task  # the thread told it so just before it ended

    def _offer_remote(self, items: list[Item]) -> None:
        """On the event loop: offer what the writer sealed to the remote sinks."""
        for sink in self.remote:
            sink.offer(items)
        self._take_remote_gaps()

    def _take_remote_gaps(self) -> None:
        """What the remote sinks dropped, for the writer's next ``gap`` entries."""
        self.writer.add_gaps([gap for sink in self.remote if (gap := sink.take_gap()) is not None])

    def _stop_at_exit(self) -> None:
        if self._state is _RUNNING:
            self._state = _CLOSED
            self.writer.put_waiter(CLOSE, None)
            self.writer.join(_EXIT_SECONDS)
            if self.witness is not None:
                self.witness.close(_EXIT_SECONDS)


def _publisher(witness: WitnessPublisher, name: str) -> Publish:
    """Hands each checkpoint line to the witness publisher (it never blocks)."""

    def publish(checkpoint_line: bytes) -> None:
        try:
            witness.submit(witness_record(name, checkpoint_line))
        except Exception:
            log.exception("decision log witness: could not build a checkpoint record")

    return publish


#: Logs started and not yet closed: held here (as their writer thread held them before the log
#: was split into parts), so that one an app forgot to close is still closed at exit.
_RUNNING_LOGS: set[DecisionLog] = set()


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
