"""``bench.signals_scale`` still runs and reports (tiny: not a measurement)."""

from __future__ import annotations

import asyncio

import pytest

from bench import signals_scale


def test_signals_scale_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(signals_scale.main(300, 2, 1, False))
    out = capsys.readouterr().out
    for line in ("inspect: p50", "observe + settle: p50", "whole stage: p50", "CPU time: median",
                 "maintenance pass: ", "maintain (at once): ", "GC: "):  # fmt: skip
        assert line in out, out
    assert "'subjects': 300" in out and "bytes per subject" in out, out
