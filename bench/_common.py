"""Shared pieces of the benchmarks: a throw-away redis-server, app servers in child processes,
the count of the statuses they answered, and medians.

Benchmarks print figures measured side by side in one run; they never fail on timing, but they
do (exit status 1) when a run had answers other than 2xx: those figures are not reported.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
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


class Answers:
    """The HTTP statuses one contender answered over a benchmark's runs, and the requests that
    got no answer at all (wrk's socket errors and timeouts).

    A benchmark reports a throughput or latency figure only from runs whose every request was
    answered 2xx: a 429 or a 503 is a refusal, usually far cheaper than the work measured, and
    counting it would report refusals as throughput. No scenario expects refusals today; one
    that did would say so and count them apart from its throughput.
    """

    def __init__(self, statuses: Mapping[int, int] | None = None, unanswered: int = 0) -> None:
        self.statuses: Counter[int] = Counter(statuses or {})
        self.unanswered = unanswered

    def count(self, status: int) -> None:
        self.statuses[status] += 1

    def add(self, other: Answers) -> None:
        self.statuses.update(other.statuses)
        self.unanswered += other.unanswered

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def valid(self) -> bool:
        """Every request answered 2xx: the run's figures may be reported."""
        return self.non_2xx == 0 and self.unanswered == 0

    def sample(self, most: int = 3) -> str:
        """The commonest non-2xx statuses with their counts: ``429 x 2,140, 503 x 3``."""
        bad = Counter({s: n for s, n in self.statuses.items() if not 200 <= s < 300})
        return ", ".join(f"{status} x {n:,}" for status, n in bad.most_common(most))

    def describe(self) -> str:
        """``non-2xx 0 of 3,912``, with the statuses and the unanswered when there are any."""
        text = f"non-2xx {self.non_2xx:,} of {self.total:,}"
        if self.non_2xx:
            text += f" ({self.sample()})"
        if self.unanswered:
            text += f", {self.unanswered:,} unanswered (socket errors or timeouts)"
        return text

    def refusal(self) -> str:
        """What a report prints instead of a figure from runs that were not all 2xx."""
        return f"REFUSED, {self.describe()}"


def report_answers(answers: Mapping[str, Answers], scope: str = "measured runs") -> list[str]:
    """Print every contender's non-2xx count (the ``Non-2xx answers`` line of every report);
    returns the contenders whose figures are refused (some answer not 2xx, or none at all)."""
    shown = "; ".join(f"{name} {a.describe()}" for name, a in answers.items())
    print(f"\nNon-2xx answers ({scope}): {shown or 'no requests'}")
    return [name for name, a in answers.items() if not a.valid]


def exit_if_refused(prog: str, refused: Sequence[str]) -> None:
    """Exit with status 1 when a contender's figures were refused: its runs had answers other
    than 2xx, which would have been reported as throughput."""
    if refused:
        print(f"{prog}: no figure reported for {', '.join(refused)}: their runs had answers "
              "other than 2xx (refusals or errors are not throughput)")  # fmt: skip
        sys.exit(1)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
