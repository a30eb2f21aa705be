"""The whole-stack benchmarks still run: each script once with a tiny ``--quick`` setting.

Not a measurement (nothing here looks at a figure's value): a benchmark that no longer starts,
whose servers answer errors, or whose report cannot be printed fails here instead of on the
day someone needs its numbers. Every report must print its ``Non-2xx answers`` line, and no
figure may be refused; a run whose contender really is refused (the pack's own quotas, which
a benchmark's load exceeds) must print no figure for it and exit with status 1. Two scripts
run at a time (this is a 2-core machine, and each script starts several servers and wrk),
each in its own process. Bounds are generous, never a
measurement: a server has ``START_TIMEOUT`` (120 s) to listen and a script ``SCRIPT_TIMEOUT``
to finish; on failure the script's whole output (its servers' output included) is shown.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench._load import Wrk

ROOT = Path(__file__).resolve().parents[2]

NEEDS = {"wrk": shutil.which("wrk"), "redis-server": shutil.which("redis-server")}
pytestmark = pytest.mark.skipif(
    not all(NEEDS.values()),
    reason=f"needs {' and '.join(n for n, p in NEEDS.items() if not p)} (make system-deps)",
)

NON_2XX = "Non-2xx answers"

# script -> (arguments, lines its report must print besides NON_2XX)
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
        [
            *["--event", "stack", "--events", "300", "--durable-events", "30"],
            *["--busy-events", "50", "--rounds", "1"],
        ],
        [
            *["event size:", "| thread", "| process", "burst (all recorded", "durable, 256 tasks"],
            *["the interpreter lock's effect", "sealer process  p50"],
        ],
    ),
    "streaming": (["--quick"], ["Time to first byte", "Per event", "summary"]),
    "quotas": (
        ["--rounds", "1", "--seconds", "1", "--checks", "100"],
        ["HTTP, medians", "slowapi-moving", "Refused checks without HTTP", "One check"],
    ),
    "memory": (["--quick"], ["decision log: 0 events dropped", "objects tracked by the GC"]),
    "profile": (["--quick", "--storage", "memory"], ["CPU per request in-process", "policy"]),
    "__main__": (["--quick", "--only", "memory"], ["1 scenarios in"]),
}


SCRIPT_TIMEOUT = 600  # seconds; a script takes 5-40 s on an idle machine
AT_ONCE = 2


def run_script(name: str, args: list[str]) -> subprocess.CompletedProcess[str] | str:
    """Run one benchmark script: what it printed (stdout and stderr), or why it did not end."""
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
    return done


def reported(name: str, args: list[str]) -> str | None:
    """None if the script ran and reported every figure, else why not (with its output)."""
    done = run_script(name, args)
    if isinstance(done, str):
        return done
    missing = [line for line in [NON_2XX, *RUNS[name][1]] if line not in done.stdout]
    if done.returncode != 0 or missing or "REFUSED" in done.stdout:
        return f"bench.{name} (exit {done.returncode}, missing {missing}):\n{done.stdout}"
    return None


def test_every_new_benchmark_runs_and_reports() -> None:
    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(reported, RUNS, (args for args, _ in RUNS.values())))
    failures = [result for result in results if result is not None]
    assert not failures, "\n\n".join(failures)


def test_a_run_with_refusals_reports_no_throughput() -> None:
    """The pack's quotas as shipped (``--quota-scale 1``: a pro subject's 60 requests a
    minute) refuse most of a saturated run with 429: the contender's figures are refused, its
    count and statuses printed instead, and the script exits with status 1."""
    args = ["--quick", "--stack", "memory", "--intervals", "0.005", "--quota-scale", "1"]
    done = run_script("switch", args)
    assert not isinstance(done, str), done
    out = done.stdout
    assert done.returncode == 1, out
    assert f"{NON_2XX} (every measured run, saturated and one connection): gk-memory@0.005 " in out
    refusals = [line for line in out.splitlines() if "REFUSED, non-2xx" in line]
    assert refusals and all("429 x " in line for line in refusals), out
    assert "no figure reported for gk-memory@0.005" in out
    assert re.search(r"\d req/s", out) is None, out  # no round's throughput figure
    row = next(line for line in out.splitlines() if line.startswith("0.005 "))
    assert "REFUSED, non-2xx" in row, out  # the table's row has no figures either


@pytest.fixture
def answering_503() -> Iterator[tuple[str, Counter[int]]]:
    """A tiny HTTP/1.1 server answering 503 to every third request and 302 to every seventh
    (the others 200); yields its URL and the statuses it sent."""
    sent: Counter[int] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            with lock:
                n = sum(sent.values()) + 1
                status = 503 if n % 3 == 0 else 302 if n % 7 == 0 else 200
                sent[status] += 1
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", sent
    finally:
        server.shutdown()
        server.server_close()


def test_wrk_counts_every_status_a_server_answers(
    answering_503: tuple[str, Counter[int]],
) -> None:
    url, sent = answering_503
    wrk = Wrk("POST", b"{}", {"content-type": "application/json"})
    try:
        load = wrk.run(url, connections=2, seconds=1)
    finally:
        wrk.close()
    answers = load.answers
    assert set(answers.statuses) == {200, 302, 503}, answers.statuses
    assert answers.total == load.requests > 0
    for status, n in answers.statuses.items():  # wrk stops with up to 2 requests in flight
        assert sent[status] - 2 <= n <= sent[status], (answers.statuses, sent)
    assert answers.non_2xx == answers.statuses[302] + answers.statuses[503]
    assert not answers.valid
    assert "503 x " in answers.refusal() and "302 x " in answers.refusal()
