"""``gatekeeper simulate``: the smoke scenario in-process, and the scenario machinery.

The thresholds the pack must meet on simulations/smoke.yaml (a farm of 50 accounts sharing
five payment cards and three datacenter /24s, against 50 customers, half a simulated hour):
- the farm harvests at most 10% of the reasoning tokens it harvests under per-key limits alone;
- at most 1% of benign requests are refused because of the pack, and at most 5% refused or
  degraded (fewer reasoning tokens than under the baseline).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gatekeeper.cli import cli
from gatekeeper.errors import ConfigurationError
from gatekeeper.offline.simulate import (
    Outcome,
    Population,
    Scenario,
    build_report,
    render_html,
    render_text,
    simulate,
)
from gatekeeper.offline.simulate.runner import evidence_by_subject

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "simulations" / "smoke.yaml"
DEFAULT = ROOT / "simulations" / "default.yaml"


async def test_the_pack_starves_the_farm_and_spares_customers() -> None:
    report = await simulate(Scenario.load(SMOKE))
    farm = report["campaigns"]["farm"]
    assert farm["baseline"]["reasoning_tokens"] > 10_000
    assert farm["pack_share_of_baseline"] <= 0.10
    benign = report["benign"]["all"]
    assert benign["baseline"]["refused_share"] == 0
    assert benign["refused_by_pack_share"] <= 0.01
    assert benign["refused_or_degraded_by_pack_share"] <= 0.05
    # Which evidence fired, per group: the farm's includes evidence spanning accounts.
    farm_evidence = farm["pack"]["evidence_by_code"]
    assert set(farm_evidence) & {"cluster_large", "cluster_huge", "family_spread"}
    assert all(isinstance(n, int) and n > 0 for n in farm_evidence.values())
    assert "evidence_by_code" in report["benign"]["all"]["pack"]
    text = render_text(report)
    assert "farm" in text and "pack/baseline" in text
    assert "evidence noted by the pack" in text
    assert "<table>" in render_html(report)


def test_evidence_is_read_per_subject_in_log_order(tmp_path: Path) -> None:
    def entry(subject: str, notes: list[str] | None) -> dict[str, object]:
        result: dict[str, object] = {"allow": True}
        if notes is not None:
            result["obligations"] = {"notes": notes}
        return {"input": {"subject": {"id": subject}}, "result": result}

    log = tmp_path / "decisions.jsonl"
    lines = [
        entry("a", None),
        entry("b", ["distillation:watch", "evidence:datacenter+family_spread"]),
        entry("a", ["distillation:suspect", "evidence:templated"]),
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    found = evidence_by_subject(log)
    assert list(found["a"]) == [(), ("templated",)]
    assert list(found["b"]) == [("datacenter", "family_spread")]
    assert evidence_by_subject(tmp_path / "missing.jsonl") == {}


def test_the_report_counts_evidence_per_group() -> None:
    population = Population(Scenario.load(SMOKE, hours=0.02))
    outcomes = [
        Outcome(200, reasoning_tokens=5, evidence=("datacenter", "family_spread"))
        if r.account.campaign
        else Outcome(200, reasoning_tokens=5)
        for r in population.requests
    ]
    report = build_report(population, {"pack": outcomes}, {})
    farm = report["campaigns"]["farm"]
    assert farm["pack"]["evidence_by_code"] == {
        "datacenter": farm["requests"],
        "family_spread": farm["requests"],
    }
    assert report["benign"]["all"]["pack"]["evidence_by_code"] == {}
    assert "datacenter " in render_text(report)
    assert "family_spread" in render_html(report)


def test_a_seed_gives_the_same_traffic() -> None:
    first, second = Population(Scenario.load(SMOKE)), Population(Scenario.load(SMOKE))
    assert [(r.at, r.account.key, r.body) for r in first.requests] == [
        (r.at, r.account.key, r.body) for r in second.requests
    ]
    other = Population(Scenario.load(SMOKE, seed=12))
    assert [r.body for r in other.requests] != [r.body for r in first.requests]


def test_campaign_accounts_share_what_the_scenario_says() -> None:
    population = Population(Scenario.load(SMOKE))
    farm = [a for a in population.accounts if a.group == "farm"]
    assert len(farm) == 50 and all(a.campaign for a in farm)
    assert len({a.payment for a in farm}) <= 5
    assert len({a.ip.rsplit(".", 1)[0] for a in farm}) <= 3
    assert {a.user_agent for a in farm} == {"python-httpx/0.27.2"}
    benign = [a for a in population.accounts if not a.campaign]
    assert len({a.payment for a in benign if a.group == "free-users"}) == 20


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"benign": [{"name": "x", "accounts": 1, "tiers": [{"tier": "free", "kyc": "email"}],
                      "requests_per_hour": 1, "network": "nowhere"}]}, "unknown network"),
        ({"hours": 0}, "greater than 0"),
        ({"campaigns": [{"name": "c", "accounts": 1, "tiers": [{"tier": "pro", "kyc": "email"}],
                         "requests_per_hour": 1, "network": "cloud", "prompts": "templates"}]},
         "needs `templates`"),
    ],
    ids=["unknown-network", "no-time", "templates-missing"],
)  # fmt: skip
def test_a_bad_scenario_is_a_clear_error(
    tmp_path: Path, patch: dict[str, object], message: str
) -> None:
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigurationError, match=message):
        Scenario.load(path)


def test_the_default_scenario_loads() -> None:
    scenario = Scenario.load(DEFAULT)
    assert {c.name for c in scenario.campaigns} == {"reseller-farm", "stealth-proxies"}
    assert scenario.pack == ROOT / "policies"


def test_cli_writes_the_subjects_file_for_a_target_gateway(tmp_path: Path) -> None:
    out = tmp_path / "subjects.json"
    result = CliRunner().invoke(cli, ["simulate", str(SMOKE), "--write-subjects", str(out)])
    assert result.exit_code == 0, result.output
    subjects = json.loads(out.read_text())["subjects"]
    assert len(subjects) == 100
    assert {"key", "id", "org", "tier", "kyc_level", "payment_fingerprint"} <= set(subjects[0])


def test_cli_reports_a_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    result = CliRunner().invoke(cli, ["simulate", str(bad)])
    assert result.exit_code == 1
    assert "error: scenario" in result.output


def tiny_scenario(tmp_path: Path) -> Path:
    """An eval harness a reviewer flags mid-run, and a campaign with tools that moves to a new
    model: every report section of issue 18 in a few hundred requests."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(
        hours=0.25,
        releases={"demo-reasoner-2": 1},
        benign=[
            {
                "name": "eval-harness",
                "accounts": 2,
                "tiers": [{"tier": "enterprise", "kyc": "business"}],
                "requests_per_hour": 240,
                "reasoning_share": 1.0,
                "network": next(iter(raw["networks"])),
                "review": {"after_requests": 20},
            }
        ],
        campaigns=[
            {
                "name": "agents",
                "accounts": 3,
                "tiers": [{"tier": "pro", "kyc": "government_id"}],
                "requests_per_hour": 120,
                "reasoning_share": 1.0,
                "network": next(iter(raw["networks"])),
                "tools": True,
                "launch": {"model": "demo-reasoner-2", "share": 0.8, "at_hours": 0.1},
            }
        ],
    )
    for key in ("pack", "baseline", "geo"):
        raw[key] = str((SMOKE.parent / raw[key]).resolve())
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


async def test_the_report_splits_a_review_and_counts_tool_calls_and_new_models(
    tmp_path: Path,
) -> None:
    scenario = Scenario.load(tiny_scenario(tmp_path))
    population = Population(scenario)
    at = population.review_at["eval-harness"]
    harness = [r for r in population.requests if r.account.group == "eval-harness"]
    assert harness[20].index == at
    models = {r.model for r in population.requests if r.account.group == "agents"}
    assert models == {"demo-reasoner", "demo-reasoner-2"}
    report = await simulate(scenario)
    agents = report["campaigns"]["agents"]
    assert agents["baseline"]["tool_call_completions"] > 0
    assert "pack_share_of_baseline_tool_calls" in agents
    assert agents["new_model"] == "demo-reasoner-2"
    assert agents["baseline"]["new_model_reasoning_tokens"] > 0
    review = report["benign"]["eval-harness"]["review"]
    assert review["at_request"] == at
    assert review["before"]["requests"] == 20
    assert review["before"]["requests"] + review["after"]["requests"] == len(harness)
    text = render_text(report)
    assert "tool-call completions" in text and "after review flag" in text
    page = render_html(report)
    assert "before the review flag" in page and "tool-call completions:" in page


def test_a_launch_model_must_have_a_release(tmp_path: Path) -> None:
    raw = yaml.safe_load(tiny_scenario(tmp_path).read_text())
    raw["releases"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigurationError, match="not in `releases`"):
        Scenario.load(path)
