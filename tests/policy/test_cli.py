"""`gatekeeper policy check | build | replay | test --engine opa`, as a policy author runs them."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gatekeeper.audit.events import DecisionRecord
from gatekeeper.cli import cli
from gatekeeper.policy import EmbeddedEngine, PolicySource, decision_from_value, load_policy
from tests.policy.conftest import POLICIES, make_input


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["policy", *args])


def test_check_passes_the_default_pack() -> None:
    result = run("check", str(POLICIES))
    assert result.exit_code == 0, result.output
    assert re.search(r"decision cases: (\d+)/\1 as expected", result.output)
    assert result.output.rstrip().endswith("OK")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda repo: (repo / "conformance" / "cases.yaml").write_text(
                (repo / "conformance" / "cases.yaml")
                .read_text()
                .replace("status: 451\n      reasons: [{code: jurisdiction_restricted, message:",
                         "status: 403\n      reasons: [{code: jurisdiction_restricted, message:")
            ),
            "case kp-is-451 (rule jurisdiction.refusals): decision.status: expected 403, got 451",
        ),
        (
            lambda repo: (repo / "gatekeeper" / "decision.rego").write_text(
                "package gatekeeper\n\ndecision := {\"allow\": false}\n"
            ),
            "a refusal needs an error status",
        ),
        (
            lambda repo: (repo / ".manifest").write_text('{"roots": ["elsewhere"]}'),
            "outside the manifest roots",
        ),
    ],
    ids=["case-mismatch", "invalid-decision", "outside-roots"],
)  # fmt: skip
def test_check_fails_naming_the_problem(pack_copy: Path, edit: Any, expected: str) -> None:
    edit(pack_copy)
    result = run("check", str(pack_copy), "--no-tests")
    assert result.exit_code == 1
    assert expected in result.output


def test_check_uses_a_sample_input_when_a_repo_has_no_cases(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text('package gatekeeper\n\ndecision := {"allow": true}\n')
    result = run("check", str(tmp_path))
    assert result.exit_code == 0, result.output
    (tmp_path / "p.rego").write_text(
        'package gatekeeper\n\ndecision := {"allow": true} if input.subject.tier == "gold"\n'
    )
    result = run("check", str(tmp_path))
    assert result.exit_code == 1 and "case sample-input" in result.output
    assert "undefined" in result.output


def test_build_writes_an_opa_bundle_with_a_revision(tmp_path: Path, pack: PolicySource) -> None:
    bundle = tmp_path / "out.tar.gz"
    result = run("build", str(POLICIES), "-o", str(bundle), "--revision", "2026.11.1")
    assert result.exit_code == 0, result.output
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("/.manifest"))  # type: ignore[arg-type]
    assert {"/.manifest", "/data.json", "/gatekeeper/decision.rego"} <= names
    assert not any("conformance" in n for n in names)
    assert manifest["revision"] == "2026.11.1" and manifest["roots"] == ["gatekeeper"]
    assert load_policy(bundle).revision == "2026.11.1"


def test_build_refuses_a_policy_that_does_not_compile(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package gatekeeper\n\ndecision := {\n")
    result = run("build", str(tmp_path), "-o", str(tmp_path / "b.tar.gz"))
    assert result.exit_code == 1 and not (tmp_path / "b.tar.gz").exists()


def test_test_with_opa_runs_opa_test(opa_bin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(opa_bin).parent), prepend=":")
    result = run("test", "--engine", "opa", str(POLICIES))
    assert result.exit_code == 0


SUBJECTS = {
    "free-us": make_input("free", "email", "US"),
    "pro-fr": make_input("pro", "government_id", "FR"),
    "unverified": make_input("free", "none", "US"),
    "kp": make_input("enterprise", "business", "KP"),
}


def recorded_log(tmp_path: Path, pack: PolicySource) -> Path:
    """A decision log as the middleware writes it: decisions, a pre-policy refusal, a checkpoint."""
    engine = EmbeddedEngine(pack)
    lines = []
    for name, doc in SUBJECTS.items():
        doc = json.loads(json.dumps(doc))
        doc["subject"]["id"] = name
        record = DecisionRecord(decision_id=f"id-{name}", revision=pack.revision, input=doc)
        record.result = decision_from_value(engine.evaluate(doc), doc).model_dump(mode="json")
        lines.append(record.to_event({}))
    refused = DecisionRecord(decision_id="id-nokey", decided_by="gatekeeper")
    refused.result = {"allow": False, "status": 401, "reasons": [{"code": "missing_api_key"}]}
    lines.append(refused.to_event({}))
    lines.append({"decision_id": "cp", "gatekeeper": {"kind": "checkpoint", "seq": 9}})
    log = tmp_path / "decisions.jsonl"
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return log


def changed_policy(pack_copy: Path) -> Path:
    """Restrict FR; let unverified accounts through."""
    jur = pack_copy / "gatekeeper" / "config" / "jurisdictions" / "data.json"
    data = json.loads(jur.read_text())
    data["restricted"].append("FR")
    jur.write_text(json.dumps(data))
    kyc = pack_copy / "gatekeeper" / "config" / "kyc" / "data.json"
    data = json.loads(kyc.read_text())
    data["minimum"] = "none"
    kyc.write_text(json.dumps(data))
    return pack_copy


def test_replay_reports_what_would_change(
    tmp_path: Path, pack: PolicySource, pack_copy: Path
) -> None:
    log = recorded_log(tmp_path, pack)
    result = run("replay", "--log", str(log), "--policy", str(changed_policy(pack_copy)))
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        f"replayed 4 of 5 decision events under revision {load_policy(pack_copy).revision}" in out
    )
    assert "skipped (no input: refused before the policy): 1" in out
    assert "allow → refuse 451 jurisdiction_restricted: 1" in out
    assert "e.g. decision id-pro-fr subject pro-fr" in out
    assert "refuse 403 kyc_insufficient → allow: 1" in out
    assert "2 decision(s) would change" in out


def test_replay_json_counts_outcomes_and_reasons(
    tmp_path: Path, pack: PolicySource, pack_copy: Path
) -> None:
    log = recorded_log(tmp_path, pack)
    result = run("replay", "--log", str(log), "--policy", str(changed_policy(pack_copy)), "--json")
    report = json.loads(result.output)
    assert report["outcomes"] == {
        "before": {
            "allow": 2,
            "refuse 403 kyc_insufficient": 1,
            "refuse 451 jurisdiction_restricted": 1,
        },
        "after": {"allow": 2, "refuse 451 jurisdiction_restricted": 2},
    }
    assert report["reasons"]["after"] == {"allow": 2, "jurisdiction_restricted": 2}
    assert report["old_revisions"] == {pack.revision: 4}
    change = report["changes"]["allow → refuse 451 jurisdiction_restricted"]
    assert change["count"] == 1 and change["examples"][0]["decision_id"] == "id-pro-fr"
    assert "decision.allow: True != False" in change["examples"][0]["fields"]


def test_replay_under_the_same_policy_changes_nothing(tmp_path: Path, pack: PolicySource) -> None:
    result = run("replay", "--log", str(recorded_log(tmp_path, pack)), "--policy", str(POLICIES))
    assert result.exit_code == 0 and "no decision would change" in result.output


def test_replay_reads_the_request_time_the_log_writes_as_a_string(
    tmp_path: Path, pack: PolicySource
) -> None:
    """The decision log writes ``input.time.unix_ns`` (beyond 2^53) as a string; the policy
    compares it as a number (the launch window), so replay hands it back as one."""
    from gatekeeper.audit.canonical import canonical_json
    from gatekeeper.offline.policy.replay import policy_input

    logged = {"time": {"unix_ns": "1796612863316339425", "hour_utc": 4}, "subject": {}}
    assert policy_input(logged)["time"] == {"unix_ns": 1796612863316339425, "hour_utc": 4}
    log = recorded_log(tmp_path, pack)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    for event in events:
        if "input" in event:
            event["input"]["time"] = {
                **event["input"].get("time", {}),
                "unix_ns": 1796612863316339425,
            }
    log.write_bytes(b"".join(canonical_json(e) + b"\n" for e in events))  # as the log writes
    assert b'"unix_ns":"' in log.read_bytes()
    result = run("replay", "--log", str(log), "--policy", str(POLICIES))
    assert result.exit_code == 0 and "no decision would change" in result.output
