from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.offline.audit.query import decision_facts, parse_time
from tests.audit.conftest import LogFactory


def event(result: dict[str, Any], status: int, **extra: Any) -> dict[str, Any]:
    quotas = extra.pop("quotas", [])
    return {
        "result": result,
        "gatekeeper": {"kind": "decision", "enforcement": {"status": status, "quotas": quotas}},
        **extra,
    }


@pytest.mark.parametrize(
    ("entry", "decision", "reasons"),
    [
        pytest.param(event({"allow": True}, 200), "allow", [], id="allowed"),
        pytest.param(event({"allow": False, "reasons": [{"code": "kyc_insufficient"}]}, 403),
                     "deny", ["kyc_insufficient"], id="policy-refusal"),
        pytest.param(event({"allow": False, "shadow": True, "reasons": [{"code": "x"}]}, 200),
                     "allow", ["x"], id="shadow-refusal-not-enforced"),
        pytest.param(event({"allow": True}, 429, quotas=[{"name": "rpm", "refused": True}]),
                     "deny", ["quota_exceeded"], id="quota-refusal"),
        pytest.param(event({"allow": True}, 503,
                           error={"code": "decision_log_unavailable", "message": "…"}),
                     "deny", ["decision_log_unavailable"], id="failed-closed-after-allow"),
        pytest.param(event({"allow": False, "reasons": [{"code": "invalid_api_key"}]}, 401),
                     "deny", ["invalid_api_key"], id="refused-before-the-policy"),
    ],
)  # fmt: skip
def test_what_counts_as_refused(entry: dict[str, Any], decision: str, reasons: list[str]) -> None:
    facts = decision_facts(entry)
    assert (facts["decision"], facts["reasons"]) == (decision, reasons)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        pytest.param("2026-05-01", 1_777_593_600_000_000_000, id="date"),
        pytest.param("2026-05-01T10:00:00Z", 1_777_629_600_000_000_000, id="utc"),
        pytest.param("2026-05-01T12:00:00+02:00", 1_777_629_600_000_000_000, id="offset"),
        pytest.param("2026-05-01T10:00:00.123456789Z", 1_777_629_600_123_456_789, id="nanos"),
        pytest.param("2h", 1_000_000_000_000 - 7_200_000_000_000, id="relative"),
    ],
)
def test_times(text: str, ns: int) -> None:
    assert parse_time(text, now_ns=1_000_000_000_000) == ns


async def test_a_log_whose_first_files_were_archived(make_log: LogFactory) -> None:
    path = await make_log(120, rotate_bytes=20_000, checkpoint_every=1000)
    rotated = sorted(path.parent.glob("decisions-*.jsonl"))
    rotated[0].unlink()
    runner = CliRunner()
    assert runner.invoke(cli, ["audit", "verify", str(path)]).exit_code == 1
    result = runner.invoke(cli, ["audit", "verify", "--partial-start", str(path)])
    assert result.exit_code == 0, result.stdout


def test_no_log_files_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["audit", "stats", str(tmp_path)])
    assert result.exit_code == 2 and "no decision log files" in result.stderr
