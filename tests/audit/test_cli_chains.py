"""``gatekeeper audit …`` on a log written by several processes: one chain per writer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.audit import DecisionLog, JsonlFileSink, Masker, Signer
from gatekeeper.audit.sinks import rotated_files
from gatekeeper.cli.main import cli
from tests.audit.conftest import decision_event


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", *map(str, args)])
    return result.exit_code, result.stdout


async def write_chain(
    path: Path, signer: Signer, events: range, *, rotate_bytes: int = 0, since_ns: int = 0
) -> None:
    """A chain at ``path`` holding ``events``, one a second from ``since_ns`` (default: now),
    so that they come after the chain's own start entry, as real traffic does."""
    since_ns = since_ns or time.time_ns()
    log = DecisionLog(
        JsonlFileSink(path, rotate_bytes=rotate_bytes),
        signer=signer,
        masker=Masker(),
        checkpoint_every=10,
    )
    for n, i in enumerate(events):
        log.record(decision_event(i, unix_ns=since_ns + i * 1_000_000_000))
        if n % 5 == 4:
            await log.flush()  # a batch at a time: rotation is due between batches
    await log.aclose()


@pytest.fixture
async def log_dir(tmp_path: Path, signer: Signer) -> Path:
    """Two workers' chains of one log: even events in the base chain, odd ones in ``.w1``."""
    directory, now = tmp_path / "log", time.time_ns()
    for name, events in (
        ("decisions.jsonl", range(0, 40, 2)),
        ("decisions.w1.jsonl", range(1, 40, 2)),
    ):
        await write_chain(directory / name, signer, events, rotate_bytes=4000, since_ns=now)
    return directory


def tamper(path: Path, seq: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    first = json.loads(lines[0])["gatekeeper"]["seq"]
    lines[seq - first] = lines[seq - first].replace(b'"tier":"', b'"tier":"x', 1)
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize("given", ["directory", "base path"])
def test_verify_reports_each_chain_with_its_rotated_files(log_dir: Path, given: str) -> None:
    target = log_dir if given == "directory" else log_dir / "decisions.jsonl"
    code, out = run("verify", "--json", target)
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    chains = {c["chain"]: c for c in report["chains"]}
    assert list(chains) == ["decisions.jsonl", "decisions.w1.jsonl"]
    for name, chain in chains.items():
        assert chain["ok"] and chain["decisions"] == 20 and chain["closed"]
        files = [Path(f).name for f in chain["files"]]
        assert len(files) > 1 and files[-1] == name  # its rotated files, then the active one
        stem = name.removesuffix(".jsonl")
        assert all(f == name or f.startswith(stem + "-") for f in files), files


def test_verify_fails_when_one_chain_is_tampered_and_names_it(log_dir: Path) -> None:
    active = log_dir / "decisions.w1.jsonl"
    tamper(active, seq=json.loads(active.read_bytes().splitlines()[1])["gatekeeper"]["seq"])
    code, out = run("verify", log_dir)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "FAILED: 1 of 2 chains: decisions.w1.jsonl"
    base = lines.index("decisions.jsonl")
    worker = lines.index("decisions.w1.jsonl")
    assert lines[base + 1] == "  OK: chain and signatures intact"
    assert lines[worker + 1].startswith("  FAILED at seq ") and "modified" in lines[worker + 1]

    code, out = run("verify", "--json", log_dir)
    assert code == 1
    chains = {c["chain"]: c for c in json.loads(out)["chains"]}
    assert chains["decisions.jsonl"]["ok"] is True
    assert chains["decisions.w1.jsonl"]["problem"]["kind"] == "modified"


def test_one_chain_given_alone_is_verified_as_before(log_dir: Path) -> None:
    code, out = run("verify", log_dir / "decisions.w1.jsonl")
    assert code == 0
    assert out.splitlines()[0] == "OK: chain and signatures intact"
    assert "20 decisions" in out.splitlines()[1]


async def test_logs_of_several_replicas_are_verified_each_with_its_own_keys(
    tmp_path: Path,
) -> None:
    paths = []
    for replica in ("a", "b"):
        keys = tmp_path / replica / "keys"
        path = tmp_path / replica / "decisions.jsonl"
        await write_chain(path, Signer.from_files(keys / "k.pem", keys), range(5))
        paths.append(path)
    code, out = run("verify", *paths)
    assert code == 0, out
    assert out.splitlines()[0] == "OK: 2 chains, each intact"
    assert f"{paths[0]}\n  OK" in out and f"{paths[1]}\n  OK" in out


def test_query_reads_every_chain_in_time_order(log_dir: Path) -> None:
    code, out = run("query", "--json", log_dir)
    assert code == 0
    ids = [json.loads(line)["decision_id"] for line in out.splitlines()]
    assert ids == [f"d-{i:05d}" for i in range(40)]  # alternating between the two chains

    code, out = run("query", "--limit", "3", log_dir / "decisions.jsonl")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["chain", "seq", "time"]
    assert [row.split()[0] for row in rows] == [
        "decisions.jsonl",
        "decisions.w1.jsonl",
        "decisions.jsonl",
    ]


def test_stats_and_report_count_every_chain(log_dir: Path, tmp_path: Path) -> None:
    code, out = run("stats", "--json", log_dir)
    assert code == 0
    stats = json.loads(out)
    assert stats["decisions"] == 40
    assert stats["chains"] == ["decisions.jsonl", "decisions.w1.jsonl"]

    tamper(rotated_files(log_dir / "decisions.jsonl")[0], seq=3)
    report = tmp_path / "report.html"
    code, out = run("report", log_dir, "-o", report)
    assert code == 0 and "(40 decisions)" in out
    html = report.read_text()
    assert "FAILED: 1 of 2 chains: decisions.jsonl" in html
    assert "seq 3 in decisions-000000000001.jsonl" in html  # the file of the base chain
