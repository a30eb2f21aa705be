"""One writer per chain: processes pointed at one log path never write into each other's chain.

Every writer here is a real process (the lock is the operating system's), started from
``sys.executable`` with the log built from settings as a server builds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.cli.main import cli
from tests.audit.conftest import complete_lines

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import asyncio, logging, os, sys
from pathlib import Path
from gatekeeper.audit.setup import build_decision_log
from gatekeeper.settings import Settings

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")

async def main() -> None:
    settings = Settings(audit={"path": Path(sys.argv[1]), "on_locked": sys.argv[2],
                               "checkpoint_every": 7, "linger_seconds": 0})
    log = build_decision_log(settings.audit)
    for i in range(int(sys.argv[3])):
        log.record({"decision_id": f"{os.getpid()}-{i}", "timestamp": "2026-05-28T20:26:40Z"})
    await log.flush()
    print("writing", log.sink.path, flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # hold the chain until told to stop
    await log.aclose()

asyncio.run(main())
"""


class Writer:
    """A process writing the decision log at ``path`` until ``stop``."""

    def __init__(self, path: Path, on_locked: str = "own_chain", events: int = 20) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), on_locked, str(events)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.file: Path | None = None

    def ready(self) -> Writer:
        """Wait until it writes (``file``: its chain), or has exited without a chain."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.file = Path(line.split(" ", 1)[1].strip()) if line.startswith("writing ") else None
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> str:
        """Close the log, let the process exit; its stderr."""
        _, err = self.proc.communicate("\n", timeout=60)
        assert self.proc.returncode == 0, err
        return err

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=60)


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    """Writers a test starts; any still running at the end are killed."""
    started: list[Writer] = []
    yield started
    for writer in started:
        if writer.proc.poll() is None:
            writer.kill()


def spawn(writers: list[Writer], path: Path, *args: str) -> Writer:
    writer = Writer(path, *args)
    writers.append(writer)
    return writer


def start(writers: list[Writer], path: Path, *args: str) -> Writer:
    return spawn(writers, path, *args).ready()


def decision_ids(path: Path) -> list[str]:
    kinds = (json.loads(line) for line in complete_lines(path))
    return [e["decision_id"] for e in kinds if e["gatekeeper"]["kind"] == "decision"]


def audit(*args: object) -> tuple[int, str]:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["audit", *map(str, args)])
    return result.exit_code, result.stdout


def test_a_second_process_never_writes_into_the_first_ones_chain(
    tmp_path: Path, writers: list[Writer]
) -> None:
    path = tmp_path / "var" / "decisions.jsonl"
    first = start(writers, path)
    second = start(writers, path)  # the first is still writing
    assert first.file == path
    assert second.file == tmp_path / "var" / "decisions.w1.jsonl"
    assert {i.split("-")[0] for i in decision_ids(path)} == {str(first.pid)}
    assert {i.split("-")[0] for i in decision_ids(second.file)} == {str(second.pid)}
    first.stop()
    err = second.stop()
    assert f"{path} is written by process {first.pid}" in err and str(second.file) in err

    code, out = audit("verify", path)  # the base path stands for every chain beside it
    assert code == 0, out
    assert out.splitlines()[0] == "OK: 2 chains, each intact"
    assert "decisions.jsonl\n  OK: chain and signatures intact" in out
    assert "decisions.w1.jsonl\n  OK: chain and signatures intact" in out


def test_with_on_locked_fail_the_second_process_stops_at_start(
    tmp_path: Path, writers: list[Writer]
) -> None:
    path = tmp_path / "decisions.jsonl"
    first = start(writers, path)
    second = start(writers, path, "fail")
    assert second.file is None
    _, err = second.proc.communicate(timeout=60)
    assert second.proc.returncode != 0
    assert f"decision log {path} is being written by process {first.pid}" in err
    assert "ChainLocked" in err
    first.stop()
    assert not (tmp_path / "decisions.w1.jsonl").exists()
    assert len(decision_ids(path)) == 20


def test_a_restarted_writer_continues_the_lowest_free_chain(
    tmp_path: Path, writers: list[Writer]
) -> None:
    path = tmp_path / "decisions.jsonl"
    first = start(writers, path)
    worker = start(writers, path)
    assert worker.file == tmp_path / "decisions.w1.jsonl"
    worker.stop()
    again = start(writers, path)  # the slot it had is free again: it carries on there
    third = start(writers, path)  # w1 is taken meanwhile: the next slot
    assert again.file == tmp_path / "decisions.w1.jsonl"
    assert third.file == tmp_path / "decisions.w2.jsonl"
    for writer in (first, again, third):
        writer.stop()
    assert sorted(p.name for p in tmp_path.glob("decisions*.jsonl")) == [
        "decisions.checkpoints.jsonl",
        "decisions.jsonl",
        "decisions.w1.checkpoints.jsonl",
        "decisions.w1.jsonl",
        "decisions.w2.checkpoints.jsonl",
        "decisions.w2.jsonl",
    ]
    code, out = audit("verify", "--json", tmp_path)
    assert code == 0, out
    chains = {c["chain"]: c for c in json.loads(out)["chains"]}
    assert chains["decisions.w1.jsonl"]["restarts"] == 1
    assert chains["decisions.w1.jsonl"]["decisions"] == 40


@pytest.mark.parametrize("end", ["exit", "kill -9"])
def test_the_lock_goes_with_the_process(tmp_path: Path, writers: list[Writer], end: str) -> None:
    path = tmp_path / "decisions.jsonl"
    first = start(writers, path)
    if end == "exit":
        first.stop()
    else:
        first.kill()
    after = start(writers, path)
    assert after.file == path  # not a worker slot: nobody holds the chain any more
    after.stop()
    restart = next(
        e["gatekeeper"]["restart"]
        for e in map(json.loads, complete_lines(path))
        if e["gatekeeper"]["kind"] == "restart"
    )
    assert restart["clean_shutdown"] is (end == "exit")
    code, out = audit("verify", path)
    assert code == 0 and out.startswith("OK: chain and signatures intact"), out


def test_workers_starting_together_on_a_new_log_get_a_chain_each_and_one_key(
    tmp_path: Path, writers: list[Writer]
) -> None:
    path = tmp_path / "decisions.jsonl"
    together = [spawn(writers, path) for _ in range(3)]  # as uvicorn --workers 3 starts them
    files = sorted(str(w.ready().file) for w in together)
    assert files == [str(tmp_path / n) for n in ("decisions.jsonl", "decisions.w1.jsonl",
                                                 "decisions.w2.jsonl")]  # fmt: skip
    for writer in together:
        writer.stop()
    assert len(list((tmp_path / "keys").glob("*.pub"))) == 1  # one signing key, made once
    code, out = audit("verify", path)
    assert code == 0 and out.startswith("OK: 3 chains, each intact"), out


UVICORN_APP = """
from gatekeeper.offline.demo.app import create_demo_app

app = create_demo_app({config!r})
"""


def test_uvicorn_workers_on_one_log_path_write_a_chain_each_that_verifies(
    tmp_path: Path,
) -> None:
    """The report of issue 15: ``uvicorn app:app --workers 2`` broke the chain at once."""
    import httpx

    from bench._common import free_port, wait_for_port
    from tests.servers import DEMO_CONFIG

    (tmp_path / "workers_app.py").write_text(UVICORN_APP.format(config=str(DEMO_CONFIG)))
    path = tmp_path / "var" / "decisions.jsonl"
    port = free_port()
    output = (tmp_path / "uvicorn.out").open("wb")
    command = [sys.executable, "-m", "uvicorn", "workers_app:app", "--app-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [*command, "--workers", "2", "--port", str(port), "--log-level", "info"],
        cwd=ROOT,
        env={**os.environ, "GATEKEEPER_AUDIT__PATH": str(path), "PYTHONUNBUFFERED": "1"},
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)
        worker = tmp_path / "var" / "decisions.w1.jsonl"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 120
            while not (path.exists() and worker.exists()) and time.monotonic() < deadline:
                time.sleep(0.2)  # both workers have opened their chain
            answered = 0
            for n in range(30):
                r = http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "demo-reasoner",
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                    headers={"authorization": f"Bearer gk-demo-pro-{n}"},  # refused: logged too
                )
                answered += "x-gatekeeper-decision-id" in r.headers
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn stops its workers gracefully
        proc.wait(60)
        output.close()
    log = (tmp_path / "uvicorn.out").read_text()
    assert answered == 30, log
    code, out = audit("verify", path)
    assert code == 0, out + log
    assert out.splitlines()[0] == "OK: 2 chains, each intact"
    logged = decision_ids(path) + decision_ids(worker)
    assert len(logged) == len(set(logged)) == 30  # every decision once, in one chain or the other
