"""Progress of a long command on stderr: done/total, elapsed time and an estimate of what is left.

Shown on a terminal (or when asked), at most once per ``interval`` seconds, each line replacing
the last; off when stderr is not a terminal, where only the final summary line is printed
(elapsed time and rate), so that logs of scripted runs stay short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class ProgressLine:
    """A ``Progress`` callback (``(done, total)``) for a command that may run in several passes
    (a ``done`` smaller than the last one starts the next pass)."""

    def __init__(
        self,
        unit: str = "requests",
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        label: str = "",
        amount: Callable[[float], str] | None = None,
    ) -> None:
        self.unit = unit
        self.label = label
        #: How an amount is written: ``1,000 requests`` by default, ``12.5 MB`` for bytes.
        self._amount = amount or (lambda n: f"{n:,.0f} {unit}".rstrip())
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if enabled is None else enabled
        self.interval = interval
        self._clock = clock
        self.started = self.pass_started = self._clock()
        self.passes = 0
        self.done = self.total = 0
        self.finished_items = 0  # items of the passes already over
        self._shown_at: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if done < self.done or self.passes == 0:
            self.finished_items += self.done
            self.passes += 1
            self.pass_started = now
        self.done, self.total = done, total
        if not self.live:
            return
        if self._shown_at is not None and now - self._shown_at < self.interval and done < total:
            return
        self._shown_at = now
        self.stream.write("\r" + self.line(now) + "\033[K")
        self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """``pass 2: 4,000/17,398 requests (23%), 31 s elapsed, about 1 min 44 s left``."""
        now = self._clock() if now is None else now
        spent = now - self.pass_started
        share = self.done / self.total if self.total else 1.0
        left = spent * (1 - share) / share if share > 0 else None
        head = f"{self.label}: " if self.label else ""
        head += f"pass {self.passes}: " if self.passes > 1 else ""
        eta = (
            f", about {duration(left)} left" if left is not None and self.done < self.total else ""
        )
        return (
            f"{head}{self._fraction()} ({share:.0%}), {duration(now - self.started)} elapsed{eta}"
        )

    def finish(self) -> None:
        """End the live line; print the summary (always, terminal or not)."""
        spent = self._clock() - self.started
        items = self.finished_items + self.done
        if self.live:
            self.stream.write("\r\033[K")
        rate = f", {self._amount(items / spent)}/s" if spent > 0 else ""
        head = f"{self.label}: " if self.label else ""
        self.stream.write(f"{head}{self._amount(items)} in {duration(spent)}{rate}\n")
        self.stream.flush()

    def _fraction(self) -> str:
        done, total = self._amount(self.done), self._amount(self.total)
        for suffix in (f" {self.unit}", " MB", " kB"):  # the unit once: 4,000/17,398 requests
            if suffix.strip() and done.endswith(suffix) and total.endswith(suffix):
                return f"{done[: -len(suffix)]}/{total}"
        return f"{done}/{total}"


def megabytes(size: float) -> str:
    """``12.5 MB`` (10^6 bytes), or ``840 kB`` below one, for progress through files."""
    return f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


def duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
