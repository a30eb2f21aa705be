"""Progress of long commands (`gatekeeper simulate`): elapsed time and time left, on stderr."""

from __future__ import annotations

import io

from gatekeeper.cli.progress import ProgressLine, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_sees_elapsed_time_and_time_left_at_most_once_a_second() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("requests", stream=out, enabled=True, clock=clock)
    line(0, 1000)
    clock.now += 10
    line(250, 1000)
    assert "250/1,000 requests (25%), 10 s elapsed, about 30 s left" in out.getvalue()
    shown = out.getvalue().count("\r")
    clock.now += 0.5
    line(300, 1000)  # within the second: not shown
    assert out.getvalue().count("\r") == shown
    clock.now += 1
    line(400, 1000)
    assert out.getvalue().count("\r") == shown + 1


def test_a_second_pass_is_named_and_timed_on_its_own() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("requests", stream=out, enabled=True, clock=clock)
    line(1000, 1000)
    clock.now += 20
    line(0, 1000)
    clock.now += 5
    line(500, 1000)
    assert "pass 2: 500/1,000 requests (50%), 25 s elapsed, about 5.0 s left" in out.getvalue()
    line.finish()
    assert out.getvalue().endswith("1,500 requests in 25 s, 60 requests/s\n")


def test_not_a_terminal_only_the_summary() -> None:
    clock, out = Clock(), io.StringIO()  # StringIO is not a TTY: off unless asked
    line = ProgressLine("requests", stream=out, clock=clock)
    line(0, 10)
    clock.now += 2
    line(10, 10)
    line.finish()
    assert out.getvalue() == "10 requests in 2.0 s, 5 requests/s\n"


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (0.42, 42, 185, 3720)] == [
        "0.4 s",
        "42 s",
        "3 min 05 s",
        "1 h 02 min",
    ]
