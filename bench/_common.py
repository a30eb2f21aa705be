"""Shared pieces of the benchmarks: a throw-away redis-server, app servers in child processes,
wrk as the load generator, and medians.

Benchmarks print figures measured side by side in one run; they never fail on timing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spawn_server(command: list[str]) -> subprocess.Popen[bytes]:
    """Start a benchmark's server with its output in a temporary file, not a pipe: a pipe
    nobody reads fills up (64 KB of tracebacks, say, of requests wrk cut off when its run
    ended) and then blocks the server in its next write, which would measure as 0 req/s."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    _LOGS[proc.pid] = log
    return proc


_LOGS: dict[int, IO[bytes]] = {}


def output_of(proc: subprocess.Popen[bytes]) -> str:
    """What a server started by ``spawn_server`` (or with a pipe) has printed so far."""
    if proc.stdout is not None:
        return proc.stdout.read().decode(errors="replace")
    log = _LOGS.get(proc.pid)
    if log is None:
        return ""
    log.seek(0)
    return bytes(log.read()).decode(errors="replace")


# How long a server may take to listen before a benchmark or a test gives up on it. Generous on
# purpose: on a loaded 2-core machine (the test suite beside a benchmark) a server importing
# gatekeeper has needed more than 30 s. A server that exits is reported at once, whatever the
# bound, so a long one costs nothing when things go well. GATEKEEPER_START_TIMEOUT overrides it.
START_TIMEOUT = float(os.environ.get("GATEKEEPER_START_TIMEOUT", "120"))


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = START_TIMEOUT
) -> None:
    """Return once something listens on ``port``; with ``proc``, fail with its output as soon
    as it exits, or when ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{output_of(proc)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    printed = ""
    if proc is not None:
        if proc.stdout is not None:  # a pipe reads to its end: stop the server we gave up on
            proc.kill()
            proc.wait()
        printed = f"; it printed:\n{output_of(proc)}"
    raise TimeoutError(f"nothing listening on port {port} after {timeout:g} s{printed}")


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server (Debian's) on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass(frozen=True)
class Child:
    """A server in a child process: where it listens, and its process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used: a cost other load on the machine barely
        changes, unlike requests/s."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def child_server(module: str, *args: str) -> Iterator[Child]:
    """``python -m <module> serve --port P <args>`` in its own process."""
    port = free_port()
    proc = spawn_server([sys.executable, "-m", module, "serve", "--port", str(port), *args])
    try:
        wait_for_port(port, proc)
        yield Child(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, *, connections: int, seconds: float, headers: Sequence[str] = ()) -> WrkResult:
    """Run wrk (one thread: the other core serves) and parse its --latency report."""
    binary = shutil.which("wrk")
    if binary is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    command = [binary, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return WrkResult(requests, rps, _ms(percentiles["50"]), _ms(percentiles["99"]), errors)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
