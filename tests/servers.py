"""Real servers for tests: redis-server and gatekeeper processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "examples" / "demo" / "gatekeeper.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


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


@contextmanager
def demo_server(tmp: Path, **env: str) -> Iterator[DemoServer]:
    """``gatekeeper demo`` in its own process, its decision log in ``tmp``."""
    port = free_port()
    log_path = tmp / f"decisions-{port}.jsonl"
    environ = {
        **os.environ,
        "GATEKEEPER_AUDIT__PATH": str(log_path),
        "PYTHONUNBUFFERED": "1",
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


class DemoServer:
    """A running demo: its base URL, its decision log and its process."""

    def __init__(self, url: str, log_path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.log_path = log_path
        self.proc = proc

    def events(self, count: int | None = None, timeout: float = 5.0) -> list[dict]:
        """The decision events written so far (waiting until at least ``count`` exist)."""
        import json

        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
            events = [json.loads(line) for line in lines if line.strip()]
            if count is None or len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]
