"""The whole-stack benchmarks still run: each script once with a tiny ``--quick`` setting.

Not a measurement (nothing here looks at a figure's value): a benchmark that no longer starts,
whose servers answer errors, or whose report cannot be printed fails here instead of on the
day someone needs its numbers. The scripts run concurrently, each in its own process, to keep
the whole test around 15 seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

NEEDS = {"wrk": shutil.which("wrk"), "redis-server": shutil.which("redis-server")}
pytestmark = pytest.mark.skipif(
    not all(NEEDS.values()),
    reason=f"needs {' and '.join(n for n, p in NEEDS.items() if not p)} (make system-deps)",
)

# script -> (arguments, lines its report must print)
RUNS = {
    "stack": (
        ["--quick"],
        [
            "uvicorn on uvloop + httptools",  # what gatekeeper installs (uvicorn[standard])
            "Whole stack, medians",
            "gk-redis",
            "slowapi",
            "quota check (acquire)",
            "The floor (one Redis script call + one policy verdict",
            "Targets",
        ],
    ),
    "scale": (
        ["--quick", "--server", "asyncio"],
        ["uvicorn on asyncio + h11", "Scale, medians", "gk-redis-2", "req/s per core"],
    ),
    "switch": (["--quick", "--stack", "memory"], ["Switch interval, medians", "0.0005"]),
    "decision_log": (
        ["--event", "stack", "--events", "300", "--durable-events", "30", "--rounds", "1"],
        ["event size:", "chained JSONL (end to end)", "durable, 256 tasks"],
    ),
    "streaming": (["--quick"], ["Time to first byte", "Per event", "summary"]),
    "memory": (["--quick"], ["decision log: 0 events dropped", "objects tracked by the GC"]),
    "profile": (["--quick", "--storage", "memory"], ["CPU per request in-process", "policy"]),
    "__main__": (["--quick", "--only", "memory"], ["1 scenarios in"]),
}


def test_every_new_benchmark_runs_and_reports() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    have_pyinstrument = importlib.util.find_spec("pyinstrument") is not None
    started = {}
    for name, (args, _) in RUNS.items():
        extra = [] if name != "profile" or have_pyinstrument else ["--no-profile"]
        module = "bench" if name == "__main__" else f"bench.{name}"
        started[name] = subprocess.Popen(
            [sys.executable, "-m", module, *args, *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    failures = []
    for name, proc in started.items():
        out, _ = proc.communicate(timeout=120)
        missing = [line for line in RUNS[name][1] if line not in out]
        if proc.returncode != 0 or missing or "failed requests" in out:
            failures.append(f"bench.{name} (exit {proc.returncode}, missing {missing}):\n{out}")
    assert not failures, "\n\n".join(failures)
