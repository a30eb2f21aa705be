"""A real OPA server for tests: ``opa run --server`` on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import ROOT, free_port

TOOLS_BIN = ROOT / ".tools" / "bin"


def find_opa() -> str | None:
    """``opa`` on PATH, else the one ``make tools`` builds into .tools/bin."""
    found = shutil.which("opa")
    if found:
        return found
    local = TOOLS_BIN / "opa"
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


def skip_reason() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go:
        return "opa is not built yet: run `make tools` (builds it with Go into .tools/bin)"
    return "neither opa nor Go is installed: the OPA engine cannot be tested here"


@dataclass
class OpaServer:
    url: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def opa_server(opa: str, *args: str) -> Iterator[OpaServer]:
    """``opa run --server`` with ``args`` (files, ``-b bundle``…); stopped afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [opa, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = OpaServer(f"http://127.0.0.1:{port}", port, proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"opa exited with {proc.returncode}:\n{out}")
            try:
                if httpx.get(f"{server.url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("opa did not become healthy")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()
