"""Deadlines that share one event-loop timer, and ``timeout``: ``asyncio.timeout`` over them.

Every request sets deadlines that almost never fire: its body must arrive within
``request.body_timeout``, its quota store call must be answered within ``quota.timeout``. An
``asyncio.timeout`` is a ``TimerHandle`` pushed onto the event loop's heap (one Python-level
comparison per level of it) and, cancelled, pulled off again in a later turn: about 4.5 µs
each (``python /tmp``-style loop with 60 other timers pending; see the commit that added this).
Here the deadlines of one loop wait in a dict and a single loop timer is armed for the earliest
of them: setting a deadline and cancelling it is a dict insertion and deletion. When the timer
fires, it runs the deadlines that are due (in the order they were set) and arms itself for the
earliest one left, so each deadline runs at its time, as a ``loop.call_at`` would.

``timeout(seconds)`` behaves as ``asyncio.timeout(seconds)`` (Python 3.11's): on expiry the
task is cancelled, and the ``CancelledError`` that results leaves the block as ``TimeoutError``
unless someone else cancelled the task meanwhile.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self


class Deadline:
    """One callback due at a loop time; ``cancel()`` before then and it never runs."""

    __slots__ = ("_timers", "args", "callback", "when")

    def __init__(
        self,
        timers: LoopTimers,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        self._timers = timers
        self.when = when
        self.callback = callback
        self.args = args

    def cancel(self) -> None:
        self._timers.pending.pop(self, None)


class LoopTimers:
    """The deadlines of one event loop, behind one ``loop.call_at`` for the earliest."""

    __slots__ = ("__weakref__", "armed_at", "handle", "pending")

    def __init__(self) -> None:
        #: Deadlines not yet run nor cancelled, in the order they were set (a dict as a set).
        self.pending: dict[Deadline, None] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.armed_at = 0.0

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Deadline:
        """``callback(*args)`` at loop time ``when`` (called on the loop, like ``call_at``)."""
        deadline = Deadline(self, when, callback, args)
        self.pending[deadline] = None
        if self.handle is None or when < self.armed_at:
            self._arm(when)
        return deadline

    def _arm(self, when: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = asyncio.get_running_loop().call_at(when, self._fire)
        self.armed_at = when

    def _fire(self) -> None:
        self.handle = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = [deadline for deadline in self.pending if deadline.when <= now]
        for deadline in due:
            if self.pending.pop(deadline, True) is not None:
                continue  # cancelled by a callback that ran before it
            try:
                deadline.callback(*deadline.args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as asyncio reports a failing timer callback
                loop.call_exception_handler(
                    {"message": "Exception in a deadline callback", "exception": exc}
                )
        if self.pending:
            earliest = min(deadline.when for deadline in self.pending)
            if self.handle is None or earliest < self.armed_at:
                self._arm(earliest)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopTimers] = (
    weakref.WeakKeyDictionary()
)
#: The loop ``loop_timers`` last served (weakly: a closed loop is not kept), and its timers.
_last: tuple[Callable[[], object], LoopTimers | None] = (lambda: None, None)


def loop_timers() -> LoopTimers:
    """The running loop's shared deadlines."""
    global _last
    loop = asyncio.get_running_loop()
    last_loop, timers = _last
    if last_loop() is loop and timers is not None:
        return timers
    timers = _by_loop.get(loop)
    if timers is None:
        timers = _by_loop[loop] = LoopTimers()
    _last = (weakref.ref(loop), timers)
    return timers


class timeout:  # lower case: used like asyncio.timeout
    """``async with timeout(seconds):`` as ``asyncio.timeout(seconds)``, on a shared timer.

    A subclass decides when the deadline fires (``_start``, then ``_expire``); entering,
    cancelling the task and leaving as ``asyncio.timeout`` does are the same for every kind."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._handle: Deadline | asyncio.Handle | None = None
        self._expired = False
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> Self:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError(f"{type(self).__name__}() should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._start(asyncio.get_running_loop())
        return self

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the deadline (``seconds`` from now)."""
        self._handle = loop_timers().call_at(loop.time() + self._seconds, self._expire)

    def _expire(self) -> None:
        """The deadline: cancel the task (at its next turn)."""
        assert self._task is not None
        self._handle = None
        self._expired = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._expired:
            assert self._task is not None
            self._expired = False
            # As asyncio.timeout: the cancellation it caused leaves as TimeoutError, unless
            # the task was also cancelled by someone else meanwhile.
            if (
                self._task.uncancel() <= self._cancelling
                and exc_type is not None
                and issubclass(exc_type, asyncio.CancelledError)
            ):
                raise TimeoutError from exc
        return None
