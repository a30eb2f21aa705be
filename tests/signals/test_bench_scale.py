"""``bench.signals_scale`` and ``bench.signals_replay`` still run and report (tiny: not a
measurement)."""

from __future__ import annotations

import asyncio

import pytest

from bench import signals_replay, signals_scale


def test_signals_scale_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(signals_scale.main(300, 2, 1, False))
    out = capsys.readouterr().out
    for line in ("inspect: p50", "observe + settle: p50", "whole stage: p50", "CPU time: median",
                 "maintenance pass: ", "maintain (at once): ", "GC: "):  # fmt: skip
        assert line in out, out
    assert "'subjects': 300" in out and "bytes per subject" in out, out


def test_signals_replay_runs_and_reports(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real stream on the tests' redis-server (flushes and reads against it), tiny.
    asyncio.run(signals_replay.main(1500, 50, redis_url))
    out = capsys.readouterr().out
    assert "3,000 observations in 3 entries" in out, out
    assert "replay by a fresh gateway: 3,000 observations" in out, out
    for line in ("bytes per observation", "24 hours of history: ", "1 hour of history: "):
        assert line in out, out
