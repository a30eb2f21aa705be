"""``wire_timeout``: a timeout on a store's answer, not on the event loop's backlog.

``asyncio.timeout(0.05)`` around a Redis call measures the wall time until the awaiting task
runs again. On a saturated process that includes every other request's turn on the event loop:
Redis answers in 0.2 ms, but the reply waits in the socket (then in the ready queue) behind
hundreds of callbacks, the deadline passes, and a healthy store is declared down (measured: 2,380
of 3,593 responses refused under ``wrk -c32``, issue 15).

``wire_timeout(seconds)`` fires only when the store had ``seconds`` of a responsive loop in
which to answer, and did not:

- the deadline timer is armed when the call is sent (callers start it around the send, not
  around a wait in a queue of their own);
- when it expires, the task is not cancelled yet. If the timer itself ran late, the loop is
  busy: the deadline starts again from now. Otherwise the loop gets ``GRACE_TURNS`` more turns,
  timed one by one: a reply already received is delivered in them, and the call succeeds; if
  any of those turns was long (over ``busy_turn``, a tenth of ``seconds``), the loop is busy and
  the deadline starts again. Only a call still waiting after quick turns is cancelled, with
  ``TimeoutError``: then the loop was free, and the store did not answer.

On an idle loop that is ``seconds`` plus microseconds. On a saturated loop a call is not failed
for the loop's own slowness, up to a hard bound of ``max(1 s, 20 * seconds)`` of wall time:
then it fires whatever the loop's turns looked like, so a process starved of CPU (whose turns
are all long) still gives up on a store that is gone. Overload itself is handled before the
work (``request.max_admitting``: shed at the door).
"""

from __future__ import annotations

import asyncio

from gatekeeper._timers import LoopTimers, loop_timers, timeout

#: Loop turns granted after the deadline: one to read a reply waiting in the socket, one for the
#: task (or a pipeline's flush) to take it, one for a pipeline caller to be woken, one spare.
GRACE_TURNS = 4


def hard_bound(seconds: float) -> float:
    """The wall time after which ``wire_timeout(seconds)`` fires however busy the loop is."""
    return max(1.0, 20 * seconds)


class wire_timeout(timeout):  # lower case: used like asyncio.timeout
    """``async with wire_timeout(seconds):`` raises ``TimeoutError`` when the body's store call
    got no answer in ``seconds`` during which the event loop was free (see the module).

    Its deadline is one of the loop's shared deadlines (``gatekeeper._timers``), not a timer
    handle of its own: a call answered in time (nearly all of them) costs a dict insertion and
    deletion instead of a push onto, and a pull off, the event loop's timer heap. Entering and
    leaving are ``timeout``'s; only when it fires differs."""

    __slots__ = ("_busy_turn", "_hard", "_loop", "_timers")

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self._busy_turn = max(0.001, seconds / 10)
        self._hard = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: LoopTimers | None = None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timers = loop_timers()
        now = loop.time()
        self._hard = now + hard_bound(self._seconds)
        self._arm(now)

    def _arm(self, now: float) -> None:
        assert self._timers is not None
        due = min(now + self._seconds, self._hard)
        self._handle = self._timers.call_at(due, self._expired_at, due)

    def _expired_at(self, due: float) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now >= self._hard:
            self._expire()  # waited the hard bound: give up, however busy the loop is
        elif now - due > self._busy_turn:
            self._arm(now)  # the timer itself ran late: the loop is busy, not the store
        else:
            self._handle = self._loop.call_soon(self._turn, GRACE_TURNS, now)

    def _turn(self, left: int, previous: float) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now >= self._hard:
            self._expire()
        elif now - previous > self._busy_turn:
            self._arm(now)  # a long turn: replies may be queued behind other work
        elif left == 0:
            self._expire()
        else:
            self._handle = self._loop.call_soon(self._turn, left - 1, now)
