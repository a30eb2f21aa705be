"""``audit.sealer = "process"``: the chain is sealed, written and fsynced by a writer process.

Real processes throughout: the writer process is ``python -m gatekeeper.audit.process``, killed
and stopped with real signals; the app is the demo model behind the middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatekeeper import Gatekeeper, Settings
from gatekeeper.audit import DecisionLog, JsonlFileSink, Masker, Signer, parse_rules
from gatekeeper.audit.canonical import digest
from gatekeeper.audit.keys import Keyring
from gatekeeper.audit.lock import ChainLocked
from gatekeeper.audit.process import ProcessSealer
from gatekeeper.audit.setup import build_decision_log
from gatekeeper.audit.sinks import checkpoint_sidecar
from gatekeeper.audit.witness import WitnessPublisher, open_witness, read_witness
from gatekeeper.observability.health import readiness
from gatekeeper.offline.audit.reader import find_log_files
from gatekeeper.offline.audit.verify import verify_log
from tests.audit.conftest import complete_lines, decision_event
from tests.servers import DEMO_CONFIG, demo_client

CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}]}
HEADERS = {"authorization": "Bearer gk-demo-enterprise"}


def entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in complete_lines(path)]


def decision_ids(path: Path) -> list[str]:
    return [
        str(e["decision_id"])
        for e in entries(path)
        if e["gatekeeper"]["kind"] == "decision"  # type: ignore[index]
    ]


def sealer_of(log: DecisionLog) -> ProcessSealer:
    sealer = log.writer.sealer
    assert isinstance(sealer, ProcessSealer)
    return sealer


def gone(pid: int, seconds: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (and been reaped) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
async def gatekeeper(tmp_path: Path) -> AsyncIterator[Gatekeeper]:
    settings = Settings.load(
        DEMO_CONFIG,
        audit={
            "path": tmp_path / "decisions.jsonl",
            "durable_paths": ["/v1/chat/*"],
            "sealer": "process",
            "durable_timeout_seconds": 10,
        },
    )
    gk = Gatekeeper.from_settings(settings)
    yield gk
    await gk.aclose()


async def test_the_setting_gives_the_log_a_writer_process(gatekeeper: Gatekeeper) -> None:
    log = gatekeeper.decision_log
    async with demo_client(gatekeeper) as http:
        r = await http.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
        on_disk = decision_ids(gatekeeper.settings.audit.path)  # before anything else runs
    assert r.status_code == 200
    assert r.headers["x-gatekeeper-decision-id"] in on_disk  # durable: answered means on disk
    pid = sealer_of(log).pid
    assert pid is not None and pid != os.getpid()
    await log.aclose()
    assert gone(pid)


async def test_a_killed_writer_process_refuses_durable_requests_and_readiness(
    gatekeeper: Gatekeeper,
) -> None:
    log = gatekeeper.decision_log
    async with demo_client(gatekeeper) as http:
        first = await http.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
        assert first.status_code == 200
        ready, _ = await readiness(gatekeeper.observability.parts.readiness_checks(), 5.0)
        assert ready
        pid = sealer_of(log).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        task = log._task
        assert task is not None
        await asyncio.wait_for(asyncio.shield(task), 10)  # the writer thread ends with it
        refused = await http.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
        other = await http.post("/v1/messages", json={**CHAT, "max_tokens": 64}, headers=HEADERS)
        ready, document = await readiness(gatekeeper.observability.parts.readiness_checks(), 5.0)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "decision_log_unavailable"
    assert "choices" not in refused.json()  # the model's answer never left
    # A route that is not durable does not wait for the log (docs/audit.md): its event is
    # dropped and counted.
    assert other.status_code == 200
    assert log.dropped >= 1
    assert not ready
    assert document["status"] == "not_ready"
    assert document["checks"]["decision_log"]["ok"] is False
    assert "stopped" in document["checks"]["decision_log"]["error"]
    assert first.headers["x-gatekeeper-decision-id"] in decision_ids(gatekeeper.settings.audit.path)


async def test_a_durable_event_is_acknowledged_only_after_the_writer_process_fsyncs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), sealer="process")
    await log.record_durable(decision_event(0), 10)  # the process runs, the chain is open
    sealer = sealer_of(log)
    pid, syncs = sealer.pid, sealer.syncs
    assert pid is not None and syncs >= 1
    os.kill(pid, signal.SIGSTOP)  # the writer process cannot write, nor fsync, nor answer
    try:
        waiting = asyncio.create_task(log.record_durable(decision_event(1), 10))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        assert "d-00001" not in decision_ids(path)
    finally:
        os.kill(pid, signal.SIGCONT)
    await waiting
    assert sealer.syncs == syncs + 1  # its answer came after one more fsync
    assert decision_ids(path)[-1] == "d-00001"
    await log.aclose()


async def test_closing_writes_everything_and_ends_the_writer_process(
    tmp_path: Path, signer: Signer, keyring: Keyring
) -> None:
    path = tmp_path / "log" / "d.jsonl"
    log = DecisionLog(
        JsonlFileSink(path),
        signer=signer,
        sealer="process",
        linger_seconds=1.0,  # nothing is written before the close unless the close does it
        masker=Masker(parse_rules(["/input/request/model"])),
        checkpoint_every=50,
    )
    for i in range(300):
        log.record(decision_event(i))
    pid = None
    for _ in range(200):  # the process starts with the first event, off the event loop
        if (pid := sealer_of(log).pid) is not None:
            break
        await asyncio.sleep(0.01)
    await log.aclose()
    assert pid is not None and gone(pid)
    assert decision_ids(path) == [f"d-{i:05d}" for i in range(300)]
    logged = entries(path)
    last = logged[-1]["gatekeeper"]
    assert last["kind"] == "checkpoint" and last["checkpoint"]["reason"] == "shutdown"  # type: ignore[index]
    assert all("model" not in e["input"]["request"] for e in logged if "input" in e)  # type: ignore[index, operator]
    assert verify_log(find_log_files([path]), keyring).exit_code == 0
    assert log.written == 300 and log.dropped == 0
    JsonlFileSink(path).close()  # the chain's lock was let go


async def test_concurrent_workers_each_seal_a_chain_that_verifies(tmp_path: Path) -> None:
    settings = Settings.load(
        DEMO_CONFIG, audit={"path": tmp_path / "log" / "decisions.jsonl", "sealer": "process"}
    )
    logs = [build_decision_log(settings.audit) for _ in range(3)]  # three workers' logs
    assert len({log.sink.path for log in logs}) == 3  # each in a chain of its own

    async def worker(n: int, log: DecisionLog) -> None:
        for i in range(n * 1000, n * 1000 + 200):
            if i % 10 == 0:
                await log.record_durable(decision_event(i), 10)
            else:
                log.record(decision_event(i))
            if i % 50 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(worker(n, log) for n, log in enumerate(logs)))
    await asyncio.gather(*(log.aclose() for log in logs))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gatekeeper", "audit", "verify", "--json", str(tmp_path / "log")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(len(decision_ids(log.sink.path)) for log in logs) == 600


PARENT = """
import asyncio, sys, time
from pathlib import Path
from gatekeeper.audit import DecisionLog, JsonlFileSink

async def main() -> None:
    log = DecisionLog(JsonlFileSink(Path(sys.argv[1])), sealer="process")
    await log.record_durable({"decision_id": "first"}, 30)
    print(log.writer.sealer.pid, flush=True)
    while True:
        log.record({"decision_id": "more"})
        await asyncio.sleep(0.001)

asyncio.run(main())
"""


def test_the_writer_process_ends_when_its_worker_dies(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(path)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(0.2)
        os.kill(parent.pid, signal.SIGKILL)  # no shutdown, no atexit: the worker is gone
        parent.wait(10)
        assert gone(pid)  # the writer process saw its input end, and ended
        JsonlFileSink(path).close()  # and nobody holds the chain's lock any more
    finally:
        with contextlib.suppress(ProcessLookupError):
            parent.kill()
        parent.wait()
    assert decision_ids(path)[0] == "first"
    report = verify_log(find_log_files([path]), Keyring(tmp_path / "keys"), allow_open_tail=True)
    assert report.exit_code == 0


def test_another_worker_cannot_open_a_chain_the_writer_process_holds(tmp_path: Path) -> None:
    async def run() -> None:
        path = tmp_path / "d.jsonl"
        sink = JsonlFileSink(path)
        log = DecisionLog(sink, sealer="process")
        await log.record_durable(decision_event(0), 10)
        sink.lock.release()  # the worker lets go of its descriptor: the process's holds
        with pytest.raises(ChainLocked):
            JsonlFileSink(path)
        await log.aclose()

    asyncio.run(run())


def test_sinks_the_process_cannot_open_are_refused(tmp_path: Path) -> None:
    class Custom:
        def write_batch(self, lines: list[bytes]) -> None: ...

        def close(self) -> None: ...

    with pytest.raises(ValueError, match="JsonlFileSink"):
        DecisionLog(Custom(), sealer="process")
    sink = JsonlFileSink(tmp_path / "d.jsonl")
    with pytest.raises(ValueError, match="stdout"):
        DecisionLog(sink, sinks=[Custom()], sealer="process")
    sink.close()


async def test_the_witness_gets_every_checkpoint_the_writer_process_signs(
    tmp_path: Path, signer: Signer, keyring: Keyring
) -> None:
    path, witness_path = tmp_path / "log" / "d.jsonl", tmp_path / "elsewhere" / "witness.jsonl"
    for run in range(2):  # the restart publishes the last checkpoint again
        log = DecisionLog(
            JsonlFileSink(path),
            signer=signer,
            checkpoint_every=10,
            sealer="process",
            witness=WitnessPublisher(open_witness(str(witness_path))),
        )
        for i in range(run * 30, run * 30 + 30):
            log.record(decision_event(i))
        await log.aclose()
    witness = open_witness(str(witness_path))
    try:
        records = read_witness(witness)
    finally:
        witness.close()
    published = {r["seq"]: r["hash"] for r in records}
    sidecar = {
        json.loads(line)["gatekeeper"]["seq"]: digest(line.rstrip(b"\n"))
        for line in checkpoint_sidecar(path).read_bytes().splitlines(keepends=True)
    }
    assert published == sidecar and len(records) == len(published) + 1
    assert verify_log(find_log_files([path]), keyring).exit_code == 0
