"""The whole-stack benchmarks still run: each script once with a tiny ``--quick`` setting.

Not a measurement (nothing here looks at a figure's value): a benchmark that no longer starts,
whose servers answer errors, or whose report cannot be printed fails here instead of on the
day someone needs its numbers. Two scripts run at a time (this is a 2-core machine, and each
script starts several servers and wrk), each in its own process. Bounds are generous, never a
measurement: a server has ``START_TIMEOUT`` (120 s) to listen and a script ``SCRIPT_TIMEOUT``
to finish; on failure the script's whole output (its servers' output included) is shown.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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


SCRIPT_TIMEOUT = 600  # seconds; a script takes 5-40 s on an idle machine
AT_ONCE = 2


def run_script(name: str, args: list[str]) -> str | None:
    """Run one benchmark script; None if it ran and reported, else why not (with its output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    have_pyinstrument = importlib.util.find_spec("pyinstrument") is not None
    extra = [] if name != "profile" or have_pyinstrument else ["--no-profile"]
    module = "bench" if name == "__main__" else f"bench.{name}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *args, *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output
        return f"bench.{name} did not finish within {SCRIPT_TIMEOUT} s:\n{out or ''}"
    missing = [line for line in RUNS[name][1] if line not in done.stdout]
    if done.returncode != 0 or missing or "failed requests" in done.stdout:
        return f"bench.{name} (exit {done.returncode}, missing {missing}):\n{done.stdout}"
    return None


def test_every_new_benchmark_runs_and_reports() -> None:
    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(run_script, RUNS, (args for args, _ in RUNS.values())))
    failures = [result for result in results if result is not None]
    assert not failures, "\n\n".join(failures)
