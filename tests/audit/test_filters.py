"""The filters ``audit query``, ``stats`` and ``report`` share, and ``query --id``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.offline.audit.query import Filters, parse_time
from tests.audit.conftest import LogFactory, decision_event


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["audit", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def graded_event(i: int) -> dict[str, Any]:
    """``decision_event(i)``; subject-3's requests also graded by the anti-extraction policy."""
    event = decision_event(i)
    if event["input"]["subject"]["id"] == "subject-3":
        level = "suspect" if i > 40 else "watch"
        event["result"]["obligations"] = {
            "flag_for_review": level == "suspect",
            "notes": [f"distillation:{level}", "evidence:cot_high+templated"],
        }
    return event


@pytest.fixture
async def log_path(make_log: LogFactory) -> Path:
    # 70 decisions, one a minute from 2026-05-28T20:26:40Z; clusters cluster-0..2
    return await make_log(70, checkpoint_every=20, event=graded_event)


def expected(**want: Any) -> int:
    """How many of the 70 events match, counted from the events themselves."""
    events = [graded_event(i) for i in range(70)]
    return sum(Filters(**want).match(e) for e in events)


CASES = [
    pytest.param(["--org", "org-1"], {"org": "org-1"}, 35, id="org"),
    pytest.param(["--cluster", "cluster-2"], {"cluster": "cluster-2"}, 23, id="cluster"),
    pytest.param(["--tier", "pro"], {"tier": "pro"}, 23, id="tier"),
    pytest.param(["--tag", "eu"], {"tag": "eu"}, 28, id="jurisdiction-tag"),
    pytest.param(["--level", "suspect"], {"level": "suspect"}, 7, id="grade"),
    pytest.param(["--level", "any"], {"level": "any"}, 17, id="any-grade"),
    pytest.param(["--evidence", "templated"], {"evidence": "templated"}, 17, id="evidence"),
    pytest.param(["--subject", "subject-3", "--since", "2026-05-28T21:00:00Z"],
                 {"subject": "subject-3", "since_ns": parse_time("2026-05-28T21:00:00Z")}, 9,
                 id="subject-since"),
    pytest.param(["--reason", "kyc_insufficient", "--tier", "free"],
                 {"reason": "kyc_insufficient", "tier": "free"}, 3, id="reason-tier"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "want", "count"), CASES)
def test_query_stats_and_report_select_the_same_decisions(
    log_path: Path, tmp_path: Path, args: list[str], want: dict[str, Any], count: int
) -> None:
    assert expected(**want) == count  # the table of cases is right
    code, out, _ = run("query", "--json", *args, log_path)
    assert code == 0 and len(out.splitlines()) == count
    code, out, _ = run("stats", "--json", *args, log_path)
    assert code == 0 and json.loads(out)["decisions"] == count
    code, out, _ = run("report", "--no-verify", "-o", tmp_path / "r.html", *args, log_path)
    assert code == 0 and f"({count} decisions)" in out
    html = (tmp_path / "r.html").read_text()
    assert f'"selected":{count},' in html  # the rows embedded are the same selection
    named = ", ".join(f"{k.lstrip('-')}={v}" for k, v in zip(args[::2], args[1::2], strict=True))
    assert f"decisions selected by {named}" in html


def test_relative_times_count_back_from_now(log_path: Path) -> None:
    # The log is from 2026-05-28: nothing in the last 24 h, everything in the last 10,000 days.
    assert run("query", "--json", "--since", "24h", log_path)[1] == ""
    assert len(run("query", "--json", "--since", "10000d", log_path)[1].splitlines()) == 70


def test_query_by_id_prints_the_decision_whole(log_path: Path) -> None:
    code, out, err = run("query", "--id", "d-00042", log_path)
    head, body = out.split("\n", 1)
    assert code == 0 and re.fullmatch(r"# chain decisions\.jsonl, seq \d+", head)
    event = json.loads(body)
    assert event["decision_id"] == "d-00042" and event["input"]["subject"]["id"] == "subject-2"
    assert event["gatekeeper"]["enforcement"]["status"] in (200, 403)
    assert "1 matching" in err


async def test_query_by_id_finds_a_worker_chain_decision(
    make_log: LogFactory, tmp_path: Path
) -> None:
    base = tmp_path / "log" / "decisions.jsonl"
    await make_log(10, path=base)
    await make_log(10, path=base.with_name("decisions.w1.jsonl"), start=100)
    code, out, _ = run("query", "--id", "d-00105", base)
    assert code == 0 and out.startswith("# chain decisions.w1.jsonl, seq ")
    assert json.loads(out.split("\n", 1)[1])["decision_id"] == "d-00105"
    code, out, _ = run("query", "--id", "d-00105", "--json", base)
    assert json.loads(out)["decision_id"] == "d-00105"
    code, out, err = run("query", "--id", "d-99999", base)
    assert code == 1 and out == "" and "no decision d-99999 in decisions.jsonl, decisions.w1" in err


def test_stats_names_the_subjects_the_anti_extraction_policy_acted_on(log_path: Path) -> None:
    code, out, _ = run("stats", "--json", log_path)
    extraction = json.loads(out)["anti_extraction"]
    assert code == 0 and extraction["graded"] == 17 and extraction["levels"] == {
        "watch": 10, "suspect": 7,
    }  # fmt: skip
    assert list(extraction["flagged_subjects"]) == ["subject-3"]
    assert extraction["flagged_subjects"]["subject-3"]["flagged_for_review"] == 7
    code, text, _ = run("stats", log_path)
    assert "subjects the anti-extraction policy acted on:" in text
    assert "subject-3" in text.split("acted on:")[1]


def test_filters_repeat_as_command_line_options() -> None:
    filters = Filters(subject="s1", reason="quota_exceeded", since_ns=parse_time("2026-05-01"))
    assert filters.as_options() == [
        "--subject", "s1", "--reason", "quota_exceeded", "--since", "2026-05-01T00:00:00Z",
    ]  # fmt: skip
