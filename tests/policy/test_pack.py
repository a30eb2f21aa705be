"""The default pack: its own Rego tests, and decisions for the demo's subjects."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli import cli
from gatekeeper.errors import InvalidDecisionError, PolicyEvaluationError, PolicyLoadError
from gatekeeper.policy import EmbeddedEngine, bundle_bytes, load_policy, run_tests

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def make_input(tier: str, kyc: str, country: str | None = "US") -> dict[str, object]:
    network: dict[str, object] = {"client_ip": "203.0.113.9", "jurisdiction_tags": []}
    if country is not None:
        network["country"] = country
    return {
        "version": 1,
        "subject": {"id": "s", "tier": tier, "kyc_level": kyc, "flags": []},
        "network": network,
        "request": {"method": "POST", "path": "/v1/messages"},
        "signals": {},
        "time": {"unix_ns": 0, "rfc3339": "x", "weekday": 0, "hour_utc": 0},
    }


def test_every_rego_unit_test_passes() -> None:
    results = run_tests(load_policy(POLICIES))
    assert len(results) >= 20
    assert {r.full_name: r.outcome for r in results if r.outcome != "PASS"} == {}


@pytest.mark.parametrize(
    ("tier", "kyc", "country", "allow", "status", "reason", "mode"),
    [
        ("free", "email", "US", True, 200, None, "drop"),
        ("pro", "government_id", "DE", True, 200, None, "summary"),
        ("enterprise", "business", "US", True, 200, None, "full"),
        ("enterprise", "business", "KP", False, 451, "jurisdiction_restricted", "drop"),
        ("free", "none", "US", False, 403, "kyc_insufficient", "drop"),
        ("free", "email", None, False, 403, "location_unknown", "drop"),
        ("pro", "government_id", None, True, 200, None, "summary"),
    ],
    ids=["free", "pro", "enterprise", "kp", "unverified", "unknown-loc", "unknown-loc-govid"],
)
async def test_demo_decisions(
    tier: str,
    kyc: str,
    country: str | None,
    allow: bool,
    status: int,
    reason: str | None,
    mode: str,
) -> None:
    engine = EmbeddedEngine(load_policy(POLICIES))
    decision = await engine.decide(make_input(tier, kyc, country))
    assert (decision.allow, decision.status) == (allow, status)
    assert (decision.primary_reason.code if decision.primary_reason else None) == reason
    assert decision.reasoning.mode == mode


def test_revision_is_a_content_hash_that_follows_edits(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text('package gatekeeper\n\ndecision := {"allow": true}\n')
    first = load_policy(tmp_path).revision
    (tmp_path / "p.rego").write_text('package gatekeeper\n\ndecision := {"allow": false}\n')
    assert first.startswith("sha256:") and load_policy(tmp_path).revision != first


def test_bundle_round_trip_keeps_revision_and_decisions(tmp_path: Path) -> None:
    source = load_policy(POLICIES)
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(bundle_bytes(source, revision="rev-42"))
    with tarfile.open(bundle) as tar:
        assert "/.manifest" in tar.getnames()
    loaded = load_policy(bundle)
    assert loaded.revision == "rev-42"
    assert EmbeddedEngine(loaded).evaluate(make_input("free", "email")) == EmbeddedEngine(
        source
    ).evaluate(make_input("free", "email"))


@pytest.mark.parametrize(
    ("rego", "error"),
    [
        ('package gatekeeper\n\ndecision := {"allow": "yes"}\n', InvalidDecisionError),
        ('package gatekeeper\n\ndecision := {"allow": 1}\n', InvalidDecisionError),
        ('package gatekeeper\n\ndecision := {"allow": false}\n', InvalidDecisionError),
        (
            'package gatekeeper\n\ndecision := {"allow": true} if input.never\n',
            PolicyEvaluationError,
        ),
    ],
    ids=["string-allow", "number-allow", "refusal-without-reason", "undefined"],
)
async def test_bad_decisions_are_policy_errors(tmp_path: Path, rego: str, error: type) -> None:
    (tmp_path / "p.rego").write_text(rego)
    engine = EmbeddedEngine(load_policy(tmp_path))
    with pytest.raises(error):
        await engine.decide(make_input("free", "email"))


def test_a_policy_that_does_not_compile_fails_to_load(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package gatekeeper\n\ndecision := {\n")
    with pytest.raises(PolicyLoadError):
        EmbeddedEngine(load_policy(tmp_path))


def test_cli_policy_test_reports_like_opa(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["policy", "test", str(POLICIES)])
    assert ok.exit_code == 0, ok.output
    assert "PASS: " in ok.output
    (tmp_path / "t_test.rego").write_text("package t_test\n\ntest_fails if false\n")
    bad = runner.invoke(cli, ["policy", "test", str(tmp_path)])
    assert bad.exit_code == 2
    assert "data.t_test.test_fails: FAIL" in bad.output


def test_cli_policy_eval_prints_the_decision(tmp_path: Path) -> None:
    import json

    doc = tmp_path / "input.json"
    doc.write_text(json.dumps(make_input("free", "none")))
    result = CliRunner().invoke(cli, ["policy", "eval", "--input", str(doc), str(POLICIES)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reasons"][0]["code"] == "kyc_insufficient"


def test_engine_works_from_another_thread() -> None:
    """regorus engines are thread-bound; the engine compiles one per thread."""
    import threading

    engine = EmbeddedEngine(load_policy(POLICIES))
    out: list[object] = []
    thread = threading.Thread(
        target=lambda: out.append(engine.evaluate(make_input("free", "email")))
    )
    thread.start()
    thread.join()
    assert out and out[0] == engine.evaluate(make_input("free", "email"))


def test_an_engine_collected_on_another_thread_drops_its_regorus_engines_safely() -> None:
    """regorus engines must be dropped on the thread that made them; Python may collect an
    EmbeddedEngine anywhere (the cyclic GC runs on whichever thread allocates)."""
    import gc
    import threading

    from gatekeeper.policy import embedded

    holder = [EmbeddedEngine(load_policy(POLICIES))]
    key = holder[0]._active.key
    assert holder[0].evaluate(make_input("free", "email"))["allow"] is True

    def drop() -> None:
        holder.clear()
        gc.collect()

    thread = threading.Thread(target=drop)
    thread.start()
    thread.join()
    assert key in embedded._thread_engines() or key in embedded._retired
    fresh = EmbeddedEngine(load_policy(POLICIES))  # this thread purges the retired engine
    assert key not in embedded._thread_engines()
    assert fresh.evaluate(make_input("free", "none"))["status"] == 403
