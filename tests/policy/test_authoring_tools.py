"""`gatekeeper policy test | eval | check` as authors use them, beside `opa test`/`opa eval`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gatekeeper.cli import cli
from tests.policy.conftest import POLICIES, make_input
from tests.policy.opa_server import find_opa

FAILING = """package t_test

x := 1

test_ok if x == 1

test_fails if {
\tx == 2
}

todo_test_later if false
"""

POLICY = """package p

allow if {
\tinput.a == 1
}

deny if {
\tinput.b == 1
}
"""

# By full path: regorus evaluates every rule of a package referenced through an import, so
# `import data.p` then `p.allow` would reach `deny` too (docs/policy-authoring.md, Coverage).
POLICY_TEST = """package p_test

test_allow if {
\tdata.p.allow with input as {"a": 1}
}
"""


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["policy", *args])


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with a failing test module (t/), a policy (p/), its tests (tests/), an
    empty directory; the working directory, so reported paths are relative like opa's."""
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "t_test.rego").write_text(FAILING)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.rego").write_text(POLICY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "p_test.rego").write_text(POLICY_TEST)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_failures_name_their_file_and_line(repo: Path) -> None:
    result = run("test", "t")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[lines.index("t/t_test.rego:7:") + 1].startswith("data.t_test.test_fails: FAIL (")
    assert "t/t_test.rego:11:" in lines and "data.t_test.todo_test_later: SKIPPED" in lines
    assert "PASS: 1/3" in lines and "FAIL: 1/3" in lines and "SKIPPED: 1/3" in lines


def test_several_paths_load_as_one_policy(repo: Path) -> None:
    alone = run("test", "tests")
    assert alone.exit_code == 2  # the test's policy is not there: it fails
    together = run("test", "p", "tests")
    assert together.exit_code == 0, together.output
    assert together.output.splitlines()[-1] == "PASS: 1/1"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["p", "tests"], 0),
        (["t"], 2),
        (["missing"], 1),
        (["empty"], 0),
        (["t", "-z", "-r", "test_ok|todo"], 0),
        (["p", "tests", "--threshold", "90"], 2),
        (["t", "--coverage"], 1),
    ],
    ids=[
        "pass", "fail", "missing-path", "no-modules", "skipped-ok", "under-threshold",
        "coverage-fail",
    ],
)  # fmt: skip
def test_exit_codes_are_opas(repo: Path, args: list[str], code: int) -> None:
    assert run("test", *args).exit_code == code
    opa = find_opa()  # compared where opa is present
    if opa:
        assert subprocess.run([opa, "test", *args], capture_output=True).returncode == code


def test_json_format_matches_opa_test(repo: Path, opa_bin: str) -> None:
    ours = json.loads(run("test", "--format", "json", "t").output)
    theirs = json.loads(
        subprocess.run([opa_bin, "test", "--format", "json", "t"], capture_output=True).stdout
    )

    def shape(results: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            f"{r['package']}.{r['name']}": {k: v for k, v in r.items() if k != "duration"}
            for r in results
        }

    assert shape(ours) == shape(theirs)
    assert all(isinstance(r["duration"], int) for r in ours)


def test_coverage_reports_lines_rules_and_a_percentage(repo: Path) -> None:
    result = run("test", "--coverage", "p", "tests")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    policy = report["files"]["p/p.rego"]
    assert policy["covered"] == [{"start": {"row": 4}, "end": {"row": 4}}]
    assert policy["not_covered"] == [{"start": {"row": 8}, "end": {"row": 8}}]
    assert policy["coverage"] == 50.0 and report["coverage"] == pytest.approx(100 * 2 / 3)
    assert policy["not_covered_rules"] == [{"name": "deny", "row": 7}]
    pretty = run("test", "--coverage", "--format", "pretty", "p", "tests").output
    assert "not covered: deny (p/p.rego:7)" in pretty
    assert "coverage: 66.7% (2/3 lines)" in pretty


def test_coverage_agrees_with_opa_on_what_is_not_covered(repo: Path, opa_bin: str) -> None:
    theirs = json.loads(
        subprocess.run([opa_bin, "test", "--coverage", "p", "tests"], capture_output=True).stdout
    )
    ours = json.loads(run("test", "--coverage", "p", "tests").output)
    rows = [r["start"]["row"] for r in theirs["files"]["p/p.rego"]["not_covered"]]
    # OPA also counts the rule head (line 7); the expression is line 8 in both.
    assert 8 in rows and ours["files"]["p/p.rego"]["not_covered"][0]["start"]["row"] == 8


def test_bench_reports_time_per_run(repo: Path) -> None:
    result = run("test", "--bench", "--benchtime", "0.01", "p", "tests")
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[0]
    name, runs, per_op = line.split("\t")
    assert name == "data.p_test.test_allow" and int(runs) > 1 and per_op.endswith(" ns/op")
    data = json.loads(
        run("test", "--bench", "--benchtime", "0.01", "-f", "json", "p", "tests").output
    )
    assert data[0]["benchmark_result"]["N"] > 1


def test_one_engine_is_compiled_for_the_whole_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the time went: one compilation per run, every test evaluated on it (timings are
    for bench/, not tests: docs/policy-authoring.md gives them)."""
    import gatekeeper.policy.compile as compile_module

    compiled: list[object] = []
    original = compile_module.compile_source

    def counting(*args: Any, **kwargs: Any) -> Any:
        compiled.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr("gatekeeper.cli.policy.compile_source", counting)
    result = run("test", str(POLICIES))
    assert result.exit_code == 0 and len(compiled) == 1


# --- eval ----------------------------------------------------------------------------------


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(make_input("free", "none")))
    return path


def test_eval_prints_any_rule_raw(input_file: Path) -> None:
    result = run(
        "eval", "-i", str(input_file), "--decision", "data.gatekeeper.kyc.refusals", str(POLICIES)
    )
    assert result.exit_code == 0, result.output
    assert [r["code"] for r in json.loads(result.output)] == ["kyc_insufficient"]
    status = run(
        "eval",
        "-i",
        str(input_file),
        "-q",
        "data.gatekeeper.decision.status",
        "-f",
        "raw",
        str(POLICIES),
    )
    assert status.output.strip() == "403"


def test_eval_json_is_opas_result_object(input_file: Path, opa_bin: str) -> None:
    query = "x := input.subject.tier"
    ours = json.loads(
        run("eval", "-i", str(input_file), "-q", query, "-f", "json", str(POLICIES)).output
    )
    theirs = json.loads(
        subprocess.run(
            [
                opa_bin,
                "eval",
                "-d",
                str(POLICIES),
                "-i",
                str(input_file),
                "--format",
                "json",
                query,
            ],
            capture_output=True,
        ).stdout
    )
    assert ours["result"][0]["bindings"] == theirs["result"][0]["bindings"] == {"x": "free"}
    assert ours["result"][0]["expressions"][0]["text"] == query


def test_eval_validates_only_the_decision_rule(input_file: Path) -> None:
    decision = json.loads(run("eval", "-i", str(input_file), str(POLICIES)).output)
    assert decision["obligations"]["step_up_kyc"] == "email" and "version" in decision
    forced = run("eval", "-q", "data.gatekeeper.config.kyc", "--validate", str(POLICIES))
    assert forced.exit_code == 2 and "is not a valid decision" in forced.output


def test_eval_exit_codes_are_opas() -> None:
    assert run("eval", "-q", "data.gatekeeper.nope", str(POLICIES)).output.strip() == "undefined"
    assert run("eval", "-q", "data.gatekeeper.nope", "--fail", str(POLICIES)).exit_code == 1
    assert run("eval", "-q", "data.gatekeeper.[", str(POLICIES)).exit_code == 2


# --- check ---------------------------------------------------------------------------------


def test_check_names_a_rule_no_case_covers(pack_copy: Path) -> None:
    (pack_copy / "gatekeeper" / "hosting.rego").write_text(
        "package gatekeeper.hosting\n\nrefusals contains {\n"
        '\t"priority": 25, "status": 403, "code": "hosting_network", "message": "no",\n'
        '} if {\n\tinput.network.is_hosting\n\tinput.subject.tier == "free"\n}\n'
    )
    decision = pack_copy / "gatekeeper" / "decision.rego"
    decision.write_text(
        decision.read_text().replace(
            "| data.gatekeeper.distillation.refusals",
            "| data.gatekeeper.distillation.refusals | data.gatekeeper.hosting.refusals",
        )
    )
    result = run("check", str(pack_copy), "--no-tests")
    assert result.exit_code == 0, result.output  # reported, not a failure
    assert (
        "not covered by a case: reason code hosting_network (gatekeeper/hosting.rego:4)"
        in result.output
    )


# --- the pack's tests and cases follow the data, not restate it ----------------------------


def _retune(repo: Path) -> None:
    """What a team tuning the shipped data does: a tier limit, a threshold, a cap, a country."""
    config = repo / "gatekeeper" / "config"
    tiers = json.loads((config / "tiers" / "data.json").read_text())
    for quota in tiers["tiers"]["free"]["quotas"]:
        if quota["name"] == "requests":
            quota["capacity"] = quota["rate"] = 25
    (config / "tiers" / "data.json").write_text(json.dumps(tiers))
    distillation = json.loads((config / "distillation" / "data.json").read_text())
    distillation["cot"]["high"] = 0.75
    distillation["quotas"]["watch"][0]["capacity"] = 999
    (config / "distillation" / "data.json").write_text(json.dumps(distillation))
    reasoning = json.loads((config / "reasoning" / "data.json").read_text())
    reasoning["by_tier"]["pro"]["exposure"]["max_tokens"] = 99
    (config / "reasoning" / "data.json").write_text(json.dumps(reasoning))
    jurisdictions = json.loads((config / "jurisdictions" / "data.json").read_text())
    jurisdictions["restricted"].append("AQ")
    (config / "jurisdictions" / "data.json").write_text(json.dumps(jurisdictions))


def test_tuning_the_shipped_data_needs_no_test_or_case_edit(pack_copy: Path) -> None:
    _retune(pack_copy)
    result = run("check", str(pack_copy))
    assert result.exit_code == 0, result.output


def test_opa_test_passes_on_retuned_data_too(pack_copy: Path, opa_bin: str) -> None:
    _retune(pack_copy)
    out = subprocess.run([opa_bin, "test", str(pack_copy)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_shipped_data_tests_catch_a_broken_invariant(pack_copy: Path) -> None:
    kyc = pack_copy / "gatekeeper" / "config" / "kyc" / "data.json"
    kyc.write_text(kyc.read_text().replace('"minimum": "email"', '"minimum": "emial"'))
    result = run("test", str(pack_copy))
    assert result.exit_code == 2
    assert "test_every_kyc_level_named_in_the_data_exists: FAIL" in result.output
