"""Shadow mode: a refusal in shadow mode is logged, not enforced."""

from __future__ import annotations

import json
from pathlib import Path

from gatekeeper.policy import EmbeddedEngine, load_policy
from tests.policy._app import chat, decision_events, serving
from tests.policy.conftest import make_input


def shadow(repo: Path, *codes: str) -> Path:
    (repo / "gatekeeper" / "config" / "shadow" / "data.json").write_text(
        json.dumps({"codes": list(codes)})
    )
    return repo


async def test_a_shadowed_rule_decides_a_refusal_that_carries_the_allowed_quotas(
    pack_copy: Path,
) -> None:
    engine = EmbeddedEngine(load_policy(shadow(pack_copy, "kyc_insufficient")))
    allowed = await engine.decide(make_input("free", "email"))
    shadowed = await engine.decide(make_input("free", "none"))
    assert (shadowed.allow, shadowed.shadow, shadowed.status) == (False, True, 403)
    assert shadowed.reasons[0].code == "kyc_insufficient"
    assert shadowed.quotas and [q.name for q in shadowed.quotas] == [q.name for q in allowed.quotas]
    assert shadowed.obligations.step_up_kyc is None


async def test_a_shadow_refusal_is_served_and_logged(tmp_path: Path, pack_copy: Path) -> None:
    # check=False: shadowing this rule changes decisions the pack's own tests pin down.
    repo = shadow(pack_copy, "kyc_insufficient")
    async with serving(tmp_path, path=repo, check=False) as (http, _):
        response = await chat(http, "gk-demo-unverified")
    assert response.status_code == 200
    [event] = decision_events(tmp_path / "decisions.jsonl")
    assert event["result"]["shadow"] is True and event["result"]["allow"] is False
    assert event["result"]["reasons"][0]["code"] == "kyc_insufficient"
    assert event["gatekeeper"]["enforcement"]["status"] == 200
    # held to the quotas an allowed request would have had
    assert {q["name"] for q in event["gatekeeper"]["enforcement"]["quotas"]} >= {"requests"}


async def test_without_shadow_the_same_request_is_refused(tmp_path: Path, pack_copy: Path) -> None:
    async with serving(tmp_path, path=pack_copy) as (http, _):
        response = await chat(http, "gk-demo-unverified")
    assert response.status_code == 403
    assert response.headers["x-gatekeeper-required-kyc"] == "email"
