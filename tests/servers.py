"""Real servers for tests: redis-server and gatekeeper processes on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench._common import START_TIMEOUT, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "examples" / "demo" / "gatekeeper.toml"
#: Test servers answer /readyz with its detail and /metrics on their own port, as a private
#: listener may (observability.public_detail); the default, tested in tests/faults, does not.
OPS_DETAIL = {"GATEKEEPER_OBSERVABILITY__PUBLIC_DETAIL": "true"}


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make test installs Debian's package)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (so at most 55535)."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 55_535)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@contextmanager
def redis_cluster(primaries: int = 3) -> Iterator[str]:
    """A throw-away Redis Cluster of ``primaries`` primaries and no replicas.

    Yields a ``redis+cluster://`` URL naming every node. Started with ``redis-server
    --cluster-enabled yes`` per node and ``redis-cli --cluster create``; stopped after.
    """
    import tempfile

    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server/redis-cli are not installed (make test installs them)")
    ports = [_cluster_port() for _ in range(primaries)]
    workdir = tempfile.mkdtemp(prefix="gk-redis-cluster-")

    def node(port: int) -> subprocess.Popen[bytes]:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
        args += ["--cluster-node-timeout", "2000", "--dir", workdir]
        return subprocess.Popen([server, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    procs = [node(port) for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_for_port(port, proc=proc)
        nodes = [f"127.0.0.1:{p}" for p in ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                info = subprocess.run(
                    [cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True
                ).stdout
                if "cluster_state:ok" in info:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cluster node {port} not ready:\n{info}")
                time.sleep(0.1)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def demo_server(tmp: Path, **env: str) -> Iterator[DemoServer]:
    """``gatekeeper demo`` in its own process, its decision log in ``tmp``."""
    port = free_port()
    log_path = tmp / f"decisions-{port}.jsonl"
    environ = {
        **os.environ,
        "GATEKEEPER_AUDIT__PATH": str(log_path),
        "PYTHONUNBUFFERED": "1",
        **OPS_DETAIL,
        **env,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "demo",
            "--config",
            str(DEMO_CONFIG),
            "--port",
            str(port),
        ],
        env=environ,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)
        yield DemoServer(f"http://127.0.0.1:{port}", log_path, proc)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def demo_workers(tmp: Path, workers: int = 2, **env: str) -> Iterator[DemoWorkers]:
    """The demo app under ``uvicorn --workers``: one server, several worker processes.

    All workers share one decision log path in ``tmp`` (not something to assert on: one chain
    has one writer). The server's output goes to ``tmp/uvicorn-PORT.log``, not a pipe nobody
    reads. Yields once the server listens; ``DemoWorkers.pids`` waits for the workers."""
    port = free_port()
    output = tmp / f"uvicorn-{port}.log"
    environ = {
        **os.environ,
        "GATEKEEPER_CONFIG": str(DEMO_CONFIG),
        "GATEKEEPER_AUDIT__PATH": str(tmp / f"decisions-{port}.jsonl"),
        "PYTHONUNBUFFERED": "1",
        **OPS_DETAIL,
        **env,
    }
    app = "gatekeeper.offline.demo.app:create_demo_app"
    command = [sys.executable, "-m", "uvicorn", "--factory", app, "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    with output.open("wb") as log:
        proc = subprocess.Popen(command, env=environ, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for_port(port, proc=proc)
        yield DemoWorkers(f"http://127.0.0.1:{port}", proc, output, workers)
    finally:
        proc.terminate()
        proc.wait(30)


class DemoWorkers:
    """A running ``uvicorn --workers`` demo: its URL, its (master) process and its output."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], output: Path, workers: int) -> None:
        self.url = url
        self.proc = proc
        self.output = output
        self.workers = workers

    def printed(self) -> str:
        return self.output.read_text(errors="replace")

    def pids(self, timeout: float = START_TIMEOUT) -> set[int]:
        """The workers' pids, as ``/readyz`` reports them, once every worker has answered
        (each request on a new connection, which any worker may accept)."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < self.workers:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError(f"workers answering: {seen}; printed:\n{self.printed()}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=timeout)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if response.status_code == 200:
                seen.add(response.json()["pid"])
        return seen


class DemoServer:
    """A running demo: its base URL, its decision log and its process."""

    def __init__(self, url: str, log_path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.log_path = log_path
        self.proc = proc

    def events(self, count: int | None = None, timeout: float = 5.0) -> list[dict]:
        """The decision events written so far (waiting until at least ``count`` exist).

        Only request events: the log's own entries (start, restart, gap, checkpoint…) are left
        out, as is a last line still being written."""
        deadline = time.monotonic() + timeout
        while True:
            events = [
                event
                for event in written_entries(self.log_path)
                if event.get("gatekeeper", {}).get("kind", "decision") == "decision"
            ]
            if count is None or len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]


def written_entries(log: Path) -> list[dict[str, Any]]:
    """The entries of a decision log that is being written: every whole line, not a last one
    the writer has not finished (a reader can see part of a batch's write)."""
    raw = log.read_text() if log.exists() else ""
    lines = raw.splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]


class RedisProcess:
    """A redis-server on a fixed port that a test can kill and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as in a crash."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=True
        ).stdout


def demo_stack(subjects_file: Path, log: Path, **sections: Any) -> tuple[Any, httpx.AsyncClient]:
    """The demo model behind gatekeeper, in-process: the demo's network (127.0.0.1 a trusted
    proxy: ``X-Forwarded-For`` names the client) and policy, a file subject store, a decision
    log at ``log``, and these settings sections (``signals={…}``, ``quota={…}``).
    ``(runtime, client)``: close the runtime."""
    from gatekeeper.runtime import Gatekeeper
    from gatekeeper.settings import Settings

    base = Settings.load(DEMO_CONFIG)
    settings = Settings.load(
        DEMO_CONFIG,
        identity={"store": "file", "subjects_file": subjects_file},
        network=base.network.model_dump(),
        policy=base.policy.model_dump(),
        audit={"path": log},
        **sections,
    )
    gk = Gatekeeper.from_settings(settings)
    return gk, demo_client(gk)


def demo_client(gk: Any) -> httpx.AsyncClient:
    """A client of the demo model behind ``gk`` (a ``Gatekeeper``), in-process over ASGI,
    from 127.0.0.1: the demo's trusted proxy, so ``X-Forwarded-For`` names the client."""
    from gatekeeper.middleware import GatekeeperMiddleware
    from gatekeeper.offline.demo.model_server import create_model_app

    app = create_model_app()
    app.add_middleware(GatekeeperMiddleware, gatekeeper=gk)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://gk")
