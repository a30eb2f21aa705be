"""Real processes for the proxy tests: upstreams and ``gatekeeper proxy`` instances.

Everything is started once per session, all at once (the processes boot in parallel), on free
loopback ports, and stopped at the end. Each proxy's stdout and stderr go to a file the tests
read (the log-secrecy test greps them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import DEMO_CONFIG, OPS_DETAIL, ROOT, DemoServer, free_port, wait_for_port

#: An upstream API key the proxy sends instead of the client's; must never be logged.
UPSTREAM_KEY = "sk-upstream-7f3a9c-never-log-me"


@dataclass
class Launched:
    """A process started by the tests, with its port and the file its output goes to."""

    proc: subprocess.Popen[bytes]
    port: int
    output: Path
    decisions: Path | None = None
    handles: list[object] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server(self) -> DemoServer:
        assert self.decisions is not None
        return DemoServer(self.url, self.decisions, self.proc)

    def log_text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def launch(args: list[str], tmp: Path, name: str, env: dict[str, str] | None = None) -> Launched:
    """Start ``python <args>`` (``{port}`` in args is replaced by a free port); do not wait."""
    port = free_port()
    output = tmp / f"{name}.log"
    handle = output.open("wb")
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, *(a.replace("{port}", str(port)) for a in args)],
        cwd=ROOT,
        env=environ,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    return Launched(proc, port, output, handles=[handle])


def launch_proxy(
    upstream: str, tmp: Path, name: str, *extra: str, env: dict[str, str] | None = None
) -> Launched:
    """``gatekeeper proxy`` with the demo's configuration in front of ``upstream``."""
    # Its own directory: the decision log keeps its signing keys next to the log file.
    decisions = tmp / name / "decisions.jsonl"
    decisions.parent.mkdir()
    args = [
        "-m",
        "gatekeeper",
        "proxy",
        "--upstream",
        upstream,
        "--config",
        str(DEMO_CONFIG),
        "--port",
        "{port}",
        *extra,
    ]
    environ = {
        "GATEKEEPER_AUDIT__PATH": str(decisions),
        # The pack's own Rego tests run in tests/policy; not again at each proxy's start.
        "GATEKEEPER_POLICY__CHECK": "false",
        **OPS_DETAIL,
        **(env or {}),
    }
    launched = launch(args, tmp, name, environ)
    launched.decisions = decisions
    return launched


def wait_all(*processes: Launched) -> None:
    for p in processes:
        try:
            wait_for_port(p.port, proc=p.proc)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{p.output.name} did not start:\n{p.log_text()}") from exc
        if p.proc.poll() is not None:
            raise RuntimeError(f"{p.output.name} exited:\n{p.log_text()}")


@dataclass
class Stack:
    """Two upstreams and the proxies in front of them."""

    model: Launched  # the demo model server, alone on its port
    echo: Launched  # tests/proxy/upstream.py
    to_model: Launched  # proxy → model server, on the asyncio loop
    to_echo: Launched  # proxy → echo upstream, upstream key set, JSON + access logs
    to_echo_fast: Launched  # proxy → echo upstream with a 0.5 s read timeout
    to_nothing: Launched  # proxy → a port nobody listens on

    def all(self) -> list[Launched]:
        return [
            self.model,
            self.echo,
            self.to_model,
            self.to_echo,
            self.to_echo_fast,
            self.to_nothing,
        ]


def _stop(*processes: Launched) -> None:
    for p in processes:
        p.stop()
        for handle in p.handles:
            handle.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """tests/proxy/upstream.py in its own process."""
    tmp = tmp_path_factory.mktemp("echo-upstream")
    launched = launch(["-m", "tests.proxy.upstream", "--port", "{port}"], tmp, "echo")
    try:
        wait_all(launched)
        yield launched
    finally:
        _stop(launched)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, echo: Launched) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("proxy-stack")
    model = launch(
        [
            "-m",
            "gatekeeper.offline.demo.model_server",
            "--port",
            "{port}",
            "--log-level",
            "warning",
        ],
        tmp,
        "model",
    )
    dead = f"http://127.0.0.1:{free_port()}"
    key_env = {"GATEKEEPER_PROXY__UPSTREAM_API_KEY": UPSTREAM_KEY}
    built = Stack(
        model=model,
        echo=echo,
        # On the standard library's loop (``server.loop``), the others on uvloop (auto): the
        # SDK tests through it run on both.
        to_model=launch_proxy(model.url, tmp, "to-model", "--access-log", "--loop", "asyncio"),
        to_echo=launch_proxy(
            echo.url,
            tmp,
            "to-echo",
            "--json-logs",
            "--access-log",
            env={**key_env, "GATEKEEPER_OBSERVABILITY__LOG_LEVEL": "DEBUG"},
        ),
        to_echo_fast=launch_proxy(
            echo.url, tmp, "to-echo-fast", env={"GATEKEEPER_PROXY__READ_TIMEOUT": "0.5"}
        ),
        to_nothing=launch_proxy(dead, tmp, "to-nothing"),
    )
    try:
        wait_all(*built.all())
        yield built
    finally:
        _stop(*(p for p in reversed(built.all()) if p is not echo))


@pytest.fixture(scope="session")
def echo_url(echo: Launched) -> str:
    return echo.url
