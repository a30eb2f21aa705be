"""``gatekeeper audit verify|query|stats|report`` as a reviewer runs them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from tests.audit.conftest import LogFactory, decision_event


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["audit", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
async def log_path(make_log: LogFactory) -> Path:
    # 70 decisions, one a minute from 2026-05-28T20:26:40Z
    return await make_log(70, checkpoint_every=20)


def test_verify_reports_an_intact_log(log_path: Path) -> None:
    code, out, _ = run("verify", log_path)
    assert code == 0
    assert out.startswith("OK: chain and signatures intact")
    assert "70 decisions" in out


def test_verify_names_the_first_bad_seq_and_what_is_wrong(log_path: Path) -> None:
    lines = log_path.read_bytes().splitlines(keepends=True)
    log_path.write_bytes(b"".join(lines[:29] + lines[30:]))  # seq 30 deleted
    code, out, _ = run("verify", log_path)
    assert code == 1
    assert out.splitlines()[0].startswith("FAILED at seq 30: missing")
    code, out, _ = run("verify", "--json", log_path)
    assert code == 1 and json.loads(out)["problem"]["seq"] == 30


def test_verify_tells_a_crash_from_tampering(log_path: Path) -> None:
    with log_path.open("ab") as file:
        file.write(b'{"decision_id":"tor')
    code, out, _ = run("verify", log_path)
    assert code == 3 and out.startswith("INCOMPLETE")


def test_verify_uses_the_trusted_keys_it_is_given(log_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-keys"
    empty.mkdir()
    code, out, _ = run("verify", "--keys", empty, log_path)
    assert code == 1 and "unknown_key" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], 70, id="everything"),
        pytest.param(["--decision", "deny"], sum(not decision_event(i)["result"]["allow"]
                                                 for i in range(70)), id="refusals"),
        pytest.param(["--country", "ir"], 14, id="country-any-case"),
        pytest.param(["--reason", "jurisdiction_restricted"], 14, id="reason"),
        pytest.param(["--subject", "subject-1"], 18, id="subject-id"),
        pytest.param(["--subject", "org-0"], 35, id="subject-org"),
        pytest.param(["--since", "2026-05-28T20:36:40Z", "--until", "2026-05-28T20:45:40Z"], 10,
                     id="time-window"),
        pytest.param(["--decision", "allow", "--country", "DE"], 12, id="combined"),
    ],
)  # fmt: skip
def test_query_filters(log_path: Path, args: list[str], expected: int) -> None:
    code, out, _ = run("query", "--json", *args, log_path)
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == expected
    assert all(e["gatekeeper"]["kind"] == "decision" for e in events)


def test_query_prints_a_table_by_default(log_path: Path) -> None:
    code, out, err = run("query", "--country", "IR", "--limit", "3", log_path)
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == [
        "seq", "time", "subject", "tier", "country", "decision", "status", "reason", "path"
    ]  # fmt: skip
    assert len(rows) == 3 and all("jurisdiction_restricted" in row for row in rows)
    assert "3 matching" in err


def test_query_rejects_a_bad_time(log_path: Path) -> None:
    code, _, err = run("query", "--since", "last tuesday", log_path)
    assert code == 2 and "--since" in err


def test_stats_counts(log_path: Path) -> None:
    code, out, _ = run("stats", "--json", log_path)
    stats = json.loads(out)
    assert code == 0
    assert stats["decisions"] == 70 == stats["allowed"] + stats["denied"]
    assert stats["reasons"]["jurisdiction_restricted"] == 14
    assert stats["kinds"]["checkpoint"] == 4
    code, text, _ = run("stats", log_path)
    assert code == 0 and text.startswith("70 decisions")


def test_report_is_self_contained(log_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, _, _ = run("report", log_path, "-o", out)
    html = out.read_text()
    assert code == 0
    assert html.count("<svg") >= 6
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", html)  # nothing fetched
    assert "intact" in html and "jurisdiction_restricted" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps)")
def test_report_opens_in_headless_chromium_without_errors(log_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert run("report", log_path, "-o", out)[0] == 0
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert result.returncode == 0, result.stderr[-2000:]
    assert not console, console  # no console output at all: no errors, no warnings
    assert 'data-report-ready="1"' in result.stdout  # the inline script ran to its end
    assert result.stdout.count("<svg") >= 6
