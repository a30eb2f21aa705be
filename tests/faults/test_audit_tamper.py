"""Tampering with the decision log, as someone who can write its directory would: every kind of
edit must make ``gatekeeper audit verify`` (the real command, in a process of its own) exit
non-zero, and an untampered log must verify. Checkpoints also go to a witness the writer cannot
rewrite (a file on "another volume", a real redis-server's stream), which catches what the
log's own directory cannot: a tail cut together with its sidecar. docs/security.md, "Faults
tried", lists each tamper and its outcome."""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import rfc8785

from gatekeeper.audit import DecisionLog, JsonlFileSink, Masker, Signer
from gatekeeper.audit.canonical import (
    GENESIS_HASH,
    canonical_json,
    canonical_json_v1,
    digest,
)
from gatekeeper.audit.chain import signing_message
from gatekeeper.audit.sinks import checkpoint_sidecar
from gatekeeper.audit.witness import WitnessPublisher, open_witness, read_witness
from tests.audit.conftest import decision_event
from tests.servers import ROOT

Lines = list[bytes]
HOUR_NS = 3600 * 1_000_000_000


def verify(*args: object) -> subprocess.CompletedProcess[str]:
    """``gatekeeper audit verify …`` as a reviewer runs it."""
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", "audit", "verify", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def problem(result: subprocess.CompletedProcess[str]) -> str:
    """The kind of the first problem ``verify --json`` reports (of any chain)."""
    report = json.loads(result.stdout)
    for chain in report.get("chains", [report]):
        if chain["problem"] is not None:
            return str(chain["problem"]["kind"])
    return "none"


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    keys = tmp_path / "log" / "keys"
    return Signer.from_files(keys / "signing.pem", keys)


@pytest.fixture
def witness_file(tmp_path: Path) -> Path:
    return tmp_path / "another-volume" / "witness.jsonl"  # not beside the log


async def write_log(
    path: Path,
    signer: Signer,
    events: range,
    *,
    witness: str | None = None,
    since_ns: int | None = None,
) -> Path:
    """One run of a writer: ``events`` (one a second from ``since_ns``), a checkpoint after
    every 10 entries, a shutdown checkpoint at the end; its checkpoints to ``witness``."""
    since_ns = since_ns if since_ns is not None else time.time_ns()
    log = DecisionLog(
        JsonlFileSink(path),
        signer=signer,
        masker=Masker(),
        checkpoint_every=10,
        labels={"app": "tamper"},
        witness=WitnessPublisher(open_witness(witness)) if witness else None,
    )
    for n, i in enumerate(events):
        log.record(decision_event(i, unix_ns=since_ns + n * 1_000_000_000))
        if n % 25 == 24:
            await log.flush()
    await log.aclose()
    return path


@pytest.fixture
async def log_path(tmp_path: Path, signer: Signer, witness_file: Path) -> Path:
    """A closed log of 150 decisions, its checkpoints also in the witness file."""
    return await write_log(tmp_path / "log" / "decisions.jsonl", signer, range(150),
                           witness=str(witness_file))  # fmt: skip


def load(path: Path) -> Lines:
    return path.read_bytes().splitlines(keepends=True)


def index_of(lines: Lines, kind: str, nth: int = 0) -> int:
    found = [i for i, line in enumerate(lines) if f'"kind":"{kind}"'.encode() in line]
    return found[nth]


def edit(lines: Lines, index: int, change: Callable[[bytes], bytes]) -> Lines:
    out = list(lines)
    out[index] = change(out[index].rstrip(b"\n")) + b"\n"
    return out


def duplicate_status(line: bytes) -> bytes:
    assert b'"result":{' in line
    return line.replace(b'"result":{', b'"result":{"status":200,', 1)


def duplicate_decision_id(line: bytes) -> bytes:
    return b'{"decision_id":"forged",' + line[1:]


def reformat(line: bytes) -> bytes:
    return json.dumps(json.loads(line), ensure_ascii=False).encode()  # ", " and ": "


def reorder_keys(line: bytes) -> bytes:
    entry = json.loads(line)
    moved = {"timestamp": entry.pop("timestamp"), **entry}
    return json.dumps(moved, separators=(",", ":"), ensure_ascii=False).encode()


def forged_after_shutdown(lines: Lines) -> Lines:
    """A plausible decision claiming the next seq and linking, correctly, to the shutdown
    checkpoint's line; in canonical form, timestamped now."""
    last = lines[-1].rstrip(b"\n")
    entry = json.loads(lines[index_of(lines, "decision", 3)])
    entry["decision_id"] = "forged-after-shutdown"
    entry["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entry["result"] = {"allow": True, "status": 200, "reasons": []}
    gk = entry["gatekeeper"]
    gk["seq"] = json.loads(last)["gatekeeper"]["seq"] + 1
    gk["prev_hash"] = digest(last)
    return [*lines, canonical_json(entry) + b"\n"]


def swap(lines: Lines, index: int) -> Lines:
    out = list(lines)
    out[index], out[index + 1] = out[index + 1], out[index]
    return out


Tamper = Callable[[Lines], Lines]
LINE_TAMPERS: list[Any] = [
    pytest.param(lambda ls: edit(ls, 20, duplicate_status), "modified", id="duplicate-status"),
    pytest.param(lambda ls: edit(ls, 20, duplicate_decision_id), "modified",
                 id="duplicate-decision-id"),
    pytest.param(lambda ls: edit(ls, len(ls) - 1, duplicate_decision_id), "modified",
                 id="duplicate-key-in-the-last-line"),
    pytest.param(lambda ls: edit(ls, 20, reformat), "modified", id="whitespace-reformatted"),
    pytest.param(lambda ls: edit(ls, 20, lambda line: line + b" "), "modified",
                 id="trailing-space"),
    pytest.param(lambda ls: edit(ls, 20, reorder_keys), "modified", id="keys-reordered"),
    pytest.param(forged_after_shutdown, "appended", id="append-after-shutdown"),
    pytest.param(lambda ls: swap(ls, 40), "reordered", id="lines-reordered"),
    pytest.param(lambda ls: ls[:20] + ls[21:], "missing", id="line-deleted"),
]  # fmt: skip


def test_an_untampered_log_verifies(log_path: Path, witness_file: Path) -> None:
    result = verify(log_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    with_witness = verify("--witness", witness_file, log_path)
    assert with_witness.returncode == 0, with_witness.stdout + with_witness.stderr
    assert "witness" in with_witness.stdout and "checkpoints of this chain" in with_witness.stdout


@pytest.mark.parametrize(("tamper", "kind"), LINE_TAMPERS)
def test_each_edit_of_the_lines_fails(log_path: Path, tamper: Tamper, kind: str) -> None:
    log_path.write_bytes(b"".join(tamper(load(log_path))))
    result = verify("--json", log_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem(result) == kind, result.stdout


def test_the_edited_line_is_named(log_path: Path) -> None:
    lines = load(log_path)
    seq = json.loads(lines[20])["gatekeeper"]["seq"]
    log_path.write_bytes(b"".join(edit(lines, 20, duplicate_status)))
    result = verify(log_path)
    assert f"FAILED at seq {seq}: modified: the line is not the canonical form" in result.stdout
    assert "decisions.jsonl:21" in result.stdout


def cut(log_path: Path, keep_through_seq: int) -> None:
    """Cut the log after ``keep_through_seq`` and its sidecar with it, as someone covering
    their tracks would."""
    lines = load(log_path)
    first = json.loads(lines[0])["gatekeeper"]["seq"]
    log_path.write_bytes(b"".join(lines[: keep_through_seq - first + 1]))
    sidecar = checkpoint_sidecar(log_path)
    kept = [c for c in load(sidecar) if json.loads(c)["gatekeeper"]["seq"] <= keep_through_seq]
    sidecar.write_bytes(b"".join(kept))


def seq_at(log_path: Path, kind: str, nth: int) -> int:
    lines = load(log_path)
    return int(json.loads(lines[index_of(lines, kind, nth)])["gatekeeper"]["seq"])


def test_a_tail_cut_with_its_sidecar_fails(log_path: Path, witness_file: Path) -> None:
    cut(log_path, seq_at(log_path, "checkpoint", 5))  # right after a signed checkpoint
    alone = verify("--json", log_path)
    assert alone.returncode == 1 and problem(alone) == "open_tail", alone.stdout
    live = verify("--json", "--allow-open-tail", "--witness", witness_file, log_path)
    assert live.returncode == 1 and problem(live) == "truncated", live.stdout


def test_a_sidecar_deleted_fails(log_path: Path) -> None:
    checkpoint_sidecar(log_path).unlink()
    result = verify("--json", log_path)
    assert result.returncode == 1 and problem(result) == "missing_sidecar", result.stdout


def test_a_sidecar_cut_back_fails(log_path: Path) -> None:
    sidecar = checkpoint_sidecar(log_path)
    sidecar.write_bytes(b"".join(load(sidecar)[:3]))
    result = verify("--json", log_path)
    assert result.returncode == 1 and problem(result) == "missing_sidecar", result.stdout


def test_head_of_a_log_fails(log_path: Path, witness_file: Path, tmp_path: Path) -> None:
    head = tmp_path / "copy" / "decisions.jsonl"
    head.parent.mkdir()
    head.write_bytes(b"".join(load(log_path)[:100]))  # head -n 100 decisions.jsonl > copy/…
    keys = log_path.parent / "keys"  # the reviewer's own copy of the public keys
    result = verify("--json", "--keys", keys, head)
    assert result.returncode == 1 and problem(result) == "missing_sidecar", result.stdout
    sidecar = checkpoint_sidecar(log_path).read_bytes()
    checkpoint_sidecar(head).write_bytes(sidecar)
    cut(head, 100)  # the sidecar cut back with it
    result = verify("--json", "--keys", keys, head)
    assert result.returncode == 1 and problem(result) == "open_tail", result.stdout
    live = verify("--json", "--keys", keys, "--allow-open-tail", "--witness", witness_file, head)
    assert live.returncode == 1 and problem(live) == "truncated", live.stdout


def test_head_of_a_log_fails_in_place_with_its_sidecar(log_path: Path) -> None:
    log_path.write_bytes(b"".join(load(log_path)[:100]))
    result = verify("--json", log_path)
    assert result.returncode == 1 and problem(result) == "truncated", result.stdout  # sidecar


async def test_an_old_unsigned_tail_fails_even_for_a_live_log(
    tmp_path: Path, signer: Signer
) -> None:
    path = await write_log(
        tmp_path / "log" / "decisions.jsonl", signer, range(150), since_ns=time.time_ns() - HOUR_NS
    )
    cut(path, seq_at(path, "checkpoint", 5) + 3)  # three unsigned decisions, an hour old
    result = verify("--json", "--allow-open-tail", path)
    assert result.returncode == 1 and problem(result) == "open_tail", result.stdout
    assert "s old; a live writer signs within 60 s" in result.stdout


async def two_runs(tmp_path: Path, signer: Signer, witness: str) -> Path:
    """A log written by two runs of a server (a clean shutdown between them)."""
    path = tmp_path / "log" / "decisions.jsonl"
    await write_log(path, signer, range(60), witness=witness)
    await write_log(path, signer, range(60, 120), witness=witness)
    return path


async def test_a_cut_at_an_earlier_shutdown_needs_the_witness(
    tmp_path: Path, signer: Signer, witness_file: Path
) -> None:
    """The cut no check of the log's own directory can see: back to the first run's shutdown
    checkpoint, sidecar included, leaves a log that is closed and consistent."""
    path = await two_runs(tmp_path, signer, str(witness_file))
    first_shutdown = next(
        json.loads(line)["gatekeeper"]["seq"]
        for line in load(path)
        if b'"reason":"shutdown"' in line
    )
    cut(path, first_shutdown)
    alone = verify("--json", path)
    assert alone.returncode == 0, alone.stdout  # what verification cannot see without a witness
    witnessed = verify("--json", "--witness", witness_file, path)
    assert witnessed.returncode == 1 and problem(witnessed) == "truncated", witnessed.stdout
    assert "the witness holds a checkpoint at seq" in witnessed.stdout


async def test_a_whole_chain_replaced_fails_against_the_witness(
    tmp_path: Path, signer: Signer, witness_file: Path
) -> None:
    path = await write_log(tmp_path / "log" / "decisions.jsonl", signer, range(40),
                           witness=str(witness_file))  # fmt: skip
    for old in [path, checkpoint_sidecar(path)]:
        old.unlink()
    await write_log(path, signer, range(40, 50))  # a fresh chain, checkpoints unpublished
    assert verify(path).returncode == 0
    result = verify("--json", "--witness", witness_file, path)
    assert result.returncode == 1 and problem(result) == "missing", result.stdout


async def test_worker_chains_verify_and_a_deleted_one_fails(
    tmp_path: Path, signer: Signer, witness_file: Path
) -> None:
    directory = tmp_path / "log"
    for name, events in (
        ("decisions.jsonl", range(0, 80, 2)),
        ("decisions.w1.jsonl", range(1, 80, 2)),
    ):
        await write_log(directory / name, signer, events, witness=str(witness_file))
    result = verify("--json", "--witness", witness_file, directory / "decisions.jsonl")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert [c["chain"] for c in report["chains"]] == ["decisions.jsonl", "decisions.w1.jsonl"]
    assert all(c["witnessed"] >= 4 for c in report["chains"])

    worker = directory / "decisions.w1.jsonl"
    for gone in [worker, checkpoint_sidecar(worker)]:
        gone.unlink()
    assert verify(directory / "decisions.jsonl").returncode == 0  # one chain left, intact
    result = verify("--json", "--witness", witness_file, directory / "decisions.jsonl")
    assert result.returncode == 1 and problem(result) == "missing", result.stdout
    assert "decisions.w1.jsonl" in result.stdout


async def test_a_tampered_worker_chain_fails(tmp_path: Path, signer: Signer) -> None:
    directory = tmp_path / "log"
    for name, events in (
        ("decisions.jsonl", range(0, 60, 2)),
        ("decisions.w1.jsonl", range(1, 60, 2)),
    ):
        await write_log(directory / name, signer, events)
    worker = directory / "decisions.w1.jsonl"
    worker.write_bytes(b"".join(edit(load(worker), 12, reformat)))
    result = verify(directory)
    assert result.returncode == 1 and "FAILED: 1 of 2 chains: decisions.w1.jsonl" in result.stdout


# -- the Redis witness (a real redis-server) ---------------------------------------------------


@pytest.fixture
def redis_witness(redis_url: str) -> str:
    return f"{redis_url}/gk:witness:{uuid.uuid4().hex}"  # redis://host:port/0/<stream key>


async def test_a_redis_witness_keeps_every_checkpoint_and_catches_a_cut(
    tmp_path: Path, signer: Signer, redis_witness: str
) -> None:
    path = await two_runs(tmp_path, signer, redis_witness)
    witness = open_witness(redis_witness)
    try:
        records = read_witness(witness)
    finally:
        witness.close()
    # Every checkpoint, by seq and line hash (a restart publishes the last one again).
    published = {r["seq"]: r["hash"] for r in records}
    assert len(records) == len(published) + 1
    sidecar = {json.loads(c)["gatekeeper"]["seq"]: digest(c.rstrip(b"\n"))
               for c in load(checkpoint_sidecar(path))}  # fmt: skip
    assert published == sidecar
    ok = verify("--witness", redis_witness, path)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    cut(path, seq_at(path, "checkpoint", 6))  # the first run's shutdown checkpoint, or before
    result = verify("--json", "--witness", redis_witness, path)
    assert result.returncode == 1 and problem(result) == "truncated", result.stdout


async def test_verify_takes_the_witness_from_the_configuration(
    tmp_path: Path, signer: Signer, redis_witness: str
) -> None:
    path = await two_runs(tmp_path, signer, redis_witness)
    config = tmp_path / "gatekeeper.toml"
    config.write_text(f'[audit]\nwitness = "{redis_witness}"\n')
    cut(path, seq_at(path, "checkpoint", 3))
    result = verify("--json", "--config", config, "--allow-open-tail", path)
    assert result.returncode == 1 and problem(result) == "truncated", result.stdout


async def test_a_witness_that_is_down_never_holds_requests_up(
    tmp_path: Path, signer: Signer
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    publisher = WitnessPublisher(open_witness(f"redis://127.0.0.1:{port}/0/gk:witness"))
    log = DecisionLog(
        JsonlFileSink(tmp_path / "log" / "decisions.jsonl"),
        signer=signer,
        checkpoint_every=10,
        witness=publisher,
        remote_drain_seconds=0.5,
    )
    started = time.monotonic()
    for i in range(200):
        log.record(decision_event(i))
    await log.flush()
    recorded = time.monotonic() - started
    await log.aclose()
    assert recorded < 2.0  # the writer wrote everything without waiting on the witness
    assert publisher.failures >= 1 and publisher.published == 0
    assert log.dropped == 0
    from gatekeeper.observability.collectors import _decision_log_metrics

    metrics = {m.name: m.samples[0].value for m in _decision_log_metrics(log)}
    assert metrics["gatekeeper_decision_log_witness_failures"] >= 1
    assert metrics["gatekeeper_decision_log_witness_dropped"] >= 1  # given up at shutdown
    assert verify(tmp_path / "log" / "decisions.jsonl").returncode == 0


# -- the HTTP witness --------------------------------------------------------------------------


@pytest.fixture
def http_witness() -> Iterator[str]:
    """A service that keeps what is POSTed to it and GETs it all back as JSON lines."""
    kept: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            kept.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(201)
            self.end_headers()

        def do_GET(self) -> None:
            body = b"".join(record + b"\n" for record in kept)
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/witness/decisions"
    finally:
        server.shutdown()
        server.server_close()


async def test_an_http_witness_catches_a_cut(
    tmp_path: Path, signer: Signer, http_witness: str
) -> None:
    path = await two_runs(tmp_path, signer, http_witness)
    ok = verify("--witness", http_witness, path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    cut(path, seq_at(path, "checkpoint", 6))
    result = verify("--json", "--witness", http_witness, path)
    assert result.returncode == 1 and problem(result) == "truncated", result.stdout


# -- RFC 8785, and logs of format 1 ------------------------------------------------------------


def test_a_third_party_rfc8785_implementation_recanonicalises_every_line(log_path: Path) -> None:
    lines = [line.rstrip(b"\n") for line in load(log_path)]
    for line in lines:
        assert rfc8785.dumps(orjson.loads(line)) == line


async def test_the_whole_stack_event_recanonicalises(tmp_path: Path, signer: Signer) -> None:
    """An event with the request time in nanoseconds (the reported IntegerDomainError) and
    floats of every kind, through the writer."""
    event = decision_event(1)
    event["input"]["time"] = {"unix_ns": time.time_ns(), "hour_utc": 4}
    event["input"]["signals"] = {"cot_elicitation": 0.0, "share": 0.25, "tiny": 1e-6}
    event["gatekeeper"]["enforcement"]["quotas"] = [{"remaining": 199999999971.0}]
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), signer=signer)
    log.record(event)
    await log.aclose()
    for line in load(tmp_path / "d.jsonl"):
        line = line.rstrip(b"\n")
        assert rfc8785.dumps(orjson.loads(line)) == line
    assert b'"unix_ns":"' in (tmp_path / "d.jsonl").read_bytes()


def format_1_log(path: Path, signer: Signer) -> Path:
    """A log as the writer wrote it before format 2: orjson's float spelling (``3.0``), no
    ``gatekeeper.format``, no chain id; signed, closed, with its sidecar."""
    lines: Lines = []
    prev, last_checkpoint = GENESIS_HASH, None
    entries: list[dict[str, Any]] = [
        {"decision_id": "s", "timestamp": "2026-01-01T00:00:00Z",
         "gatekeeper": {"kind": "start", "start": {"key": signer.fingerprint}}},
        *({"decision_id": f"d{i}", "timestamp": "2026-01-01T00:00:01Z",
           "result": {"allow": True, "period": 3600.0},
           "gatekeeper": {"kind": "decision"}} for i in range(12)),
    ]  # fmt: skip
    for index in range(len(entries) + 2):
        seq = index + 1
        if index < len(entries):
            entry = entries[index]
        else:
            body: dict[str, Any] = {
                "head_seq": seq - 1, "head_hash": prev, "previous": last_checkpoint,
                "key": signer.fingerprint, "reason": "interval" if index == len(entries)
                else "shutdown", "signed_at": "2026-01-01T00:00:02Z",
            }  # fmt: skip
            body["signature"] = signer.sign(signing_message(body))
            entry = {"decision_id": f"c{seq}", "timestamp": "2026-01-01T00:00:02Z",
                     "gatekeeper": {"kind": "checkpoint", "checkpoint": body}}  # fmt: skip
        entry["gatekeeper"].update(seq=seq, prev_hash=prev)
        line = canonical_json_v1(entry)
        lines.append(line + b"\n")
        prev = digest(line)
        if entry["gatekeeper"]["kind"] == "checkpoint":
            last_checkpoint = {"seq": seq, "hash": prev}
    assert b'"period":3600.0' in lines[1]  # format 1 indeed
    path.write_bytes(b"".join(lines))
    checkpoint_sidecar(path).write_bytes(b"".join(lines[-2:]))
    return path


def test_a_format_1_log_still_verifies_and_its_tampering_fails(
    tmp_path: Path, signer: Signer
) -> None:
    path = format_1_log(tmp_path / "log" / "decisions.jsonl", signer)
    result = verify(path)
    assert result.returncode == 0, result.stdout + result.stderr
    path.write_bytes(b"".join(edit(load(path), 3, lambda line: line.replace(b",", b", ", 1))))
    result = verify("--json", path)
    assert result.returncode == 1 and problem(result) == "modified", result.stdout


def test_hashes_cover_the_exact_bytes(log_path: Path) -> None:
    lines = [line.rstrip(b"\n") for line in load(log_path)]
    for before, after in itertools.pairwise(lines):
        expected = "sha256:" + hashlib.sha256(before).hexdigest()
        assert json.loads(after)["gatekeeper"]["prev_hash"] == expected
