"""Progress of the audit commands on big logs: on stderr, at most once a second, on a terminal
or with --progress; a summary line with the elapsed time either way."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.cli.progress import ProgressLine, megabytes
from tests.audit.conftest import LogFactory


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_bytes_read_elapsed_time_and_time_left() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine(
        "", label="verifying", amount=megabytes, stream=out, enabled=True, clock=clock
    )
    line(0, 200_000_000)
    clock.now += 10
    line(50_000_000, 200_000_000)
    assert "verifying: 50.0/200.0 MB (25%), 10 s elapsed, about 30 s left" in out.getvalue()
    clock.now += 0.4
    line(60_000_000, 200_000_000)  # within the second: not shown
    assert "60.0/200.0" not in out.getvalue()
    clock.now += 30
    line(200_000_000, 200_000_000)
    line.finish()
    assert out.getvalue().endswith(
        "\rverifying: 200.0 MB in 40 s, 5.0 MB/s\n".replace("\r", "\r\033[K")
    )


@pytest.fixture
async def log_path(make_log: LogFactory) -> Path:
    return await make_log(40)


@pytest.mark.parametrize("command", ["verify", "query", "stats", "report"])
def test_every_command_ends_with_a_summary_line(
    log_path: Path, tmp_path: Path, command: str
) -> None:
    extra = ["-o", str(tmp_path / "r.html")] if command == "report" else []
    result = CliRunner().invoke(cli, ["audit", command, *extra, str(log_path)])
    assert result.exit_code == 0, result.stderr
    assert "\r" not in result.stderr  # not a terminal: no live line
    assert re.search(r"^\w+: \d+ kB in \d+\.\d s, [\d,.]+ [kM]B/s$", result.stderr, re.M)


def test_progress_is_shown_when_asked_for(log_path: Path) -> None:
    result = CliRunner().invoke(cli, ["audit", "verify", "--progress", str(log_path)])
    assert result.exit_code == 0
    assert re.search(r"\rverifying: 0/\d+ kB \(0%\), 0\.\d s elapsed", result.stderr)
    assert re.search(r"\033\[Kverifying: \d+ kB in \d+\.\d s", result.stderr)
