"""Shared intelligence through the whole stack: the middleware with the embedded engine and the
default pack, a decision log on disk; and the round trip export -> import between two runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stix2
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings
from tests.servers import DEMO_CONFIG, demo_stack, written_entries

BUNDLE = Path(__file__).resolve().parents[2] / "examples" / "intel" / "bundle.json"
NETWORK_INDICATOR = "indicator--6a1f0c9e-0c35-4b5e-9a52-1f4f6a2b7d01"
TEMPLATE = "Think step by step and show your full reasoning: {name} has {n} apples."
NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jonas"]


def account(key: str, *, young: bool = True, card: str | None = None) -> dict[str, Any]:
    created = datetime.now(UTC) - timedelta(days=3 if young else 900)
    return {
        "key": f"sk-{key}",
        "id": key,
        "org": f"org-{key}",
        "tier": "pro",
        "kyc_level": "payment",
        "account_created": created.date().isoformat(),
        "payment_fingerprint": card or f"card-{key}",
    }


Gateway = Callable[..., Any]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    built: list[Gatekeeper] = []

    async def build(
        accounts: list[dict[str, Any]], **signals: Any
    ) -> tuple[httpx.AsyncClient, Path]:
        n = len(built)
        subjects = tmp_path / f"subjects-{n}.json"
        subjects.write_text(json.dumps({"subjects": accounts}))
        log = tmp_path / f"run-{n}" / "decisions.jsonl"
        gk, client = demo_stack(subjects, log, signals=signals)
        built.append(gk)
        return client, log

    yield build
    for gk in built:
        await gk.aclose()


def ask(client: httpx.AsyncClient, key: str, prompt: str, *, ip: str, agent: str) -> Any:
    body = {
        "model": "demo-reasoner",
        "reasoning_effort": "high",
        "messages": [{"role": "user", "content": prompt}],
    }
    headers = {"authorization": f"Bearer sk-{key}", "user-agent": agent, "x-forwarded-for": ip}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def read_events(log: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    return {
        e["decision_id"]: e
        for e in written_entries(log)
        if e.get("decision_id") in wanted and "input" in e
    }


async def logged(log: Path, decision_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The events of ``decision_ids`` (the decision log writes in the background)."""
    wanted = set(decision_ids)
    for _ in range(200):
        found = read_events(log, wanted)
        if len(found) == len(wanted):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(wanted)} events not all logged in {log}")


async def test_a_request_from_an_indicator_prefix_names_it_in_its_decision_event(
    gateway: Gateway, tmp_path: Path
) -> None:
    intel = tmp_path / "intel.json"
    imported = CliRunner().invoke(cli, ["intel", "import", str(BUNDLE), "--out", str(intel)])
    assert imported.exit_code == 0, imported.output
    client, log = await gateway([account("a1"), account("b1")], intel_path=intel)
    hit = await ask(client, "a1", "What is 2 + 2?", ip="203.0.113.200", agent="curl/8.5")
    # 192.0.2.0/24 is in the bundle too, but its indicator expired in 2020.
    miss = await ask(client, "b1", "What is 2 + 2?", ip="192.0.2.44", agent="curl/8.5")
    assert hit.status_code == miss.status_code == 200
    await client.aclose()
    events = await logged(
        log, [hit.headers["x-gatekeeper-decision-id"], miss.headers["x-gatekeeper-decision-id"]]
    )
    event = events[hit.headers["x-gatekeeper-decision-id"]]
    assert event["gatekeeper"]["indicators"] == [
        {"id": NETWORK_INDICATOR, "kind": "network", "source": "Example Model Provider"}
    ]
    assert event["input"]["signals"]["indicators"] == [
        {
            "id": NETWORK_INDICATOR,
            "kind": "network",
            "source": "Example Model Provider",
            "confidence": 80,
        }
    ]
    # The default pack weighs the match: young + datacenter + shared_intel is "watch".
    assert event["result"]["obligations"]["notes"] == [
        "distillation:watch",
        "evidence:datacenter+new_account+shared_intel",
    ]
    other = events[miss.headers["x-gatekeeper-decision-id"]]
    assert "indicators" not in other["gatekeeper"]
    assert other["input"]["signals"]["indicators"] == []


async def run_campaign(
    client: httpx.AsyncClient, accounts: list[str], ip_base: str, rounds: int
) -> list[Any]:
    responses = []
    for round_ in range(rounds):
        for i, key in enumerate(accounts):
            prompt = TEMPLATE.format(name=NAMES[(i + round_) % len(NAMES)], n=i * 7 + round_)
            responses.append(
                await ask(client, key, prompt, ip=f"{ip_base}.{10 + i}", agent="harvest-kit/0.9")
            )
    return responses


async def test_export_from_one_run_is_matched_by_the_next(gateway: Gateway, tmp_path: Path) -> None:
    # Run 1: 24 young accounts, each with its own card and org, from one hosting /24 with one
    # client, sending one template: the pack flags the campaign (family spread, cluster).
    farm = [f"farm-{i}" for i in range(24)]
    client, log = await gateway([account(k) for k in farm])
    responses = await run_campaign(client, farm, "203.0.113", rounds=2)
    await client.aclose()
    await logged(log, [r.headers["x-gatekeeper-decision-id"] for r in responses])

    bundle_path = tmp_path / "flagged.json"
    exported = CliRunner().invoke(
        cli,
        [
            "intel",
            "export",
            "--log",
            str(log),
            "--producer",
            "Provider One",
            "-o",
            str(bundle_path),
        ],
    )
    assert exported.exit_code == 0, exported.output
    assert "1 flagged clusters" in exported.stderr
    bundle = stix2.parse(bundle_path.read_text(), allow_custom=True)
    kinds = {o.type for o in bundle.objects}
    assert kinds == {"identity", "indicator", "grouping"}
    (producer,) = [o for o in bundle.objects if o.type == "identity"]
    assert producer.name == "Provider One"
    indicators = [o for o in bundle.objects if o.type == "indicator"]
    assert {tuple(o.labels) for o in indicators} == {
        ("model-distillation", "network"),
        ("model-distillation", "user_agent"),
        ("model-distillation", "prompt_family"),
    }
    for indicator in indicators:
        assert indicator.created_by_ref == producer.id
        assert indicator.valid_until > indicator.valid_from
        assert indicator.confidence in (60, 85)
    (grouping,) = [o for o in bundle.objects if o.type == "grouping"]
    assert set(grouping.object_refs) == {o.id for o in indicators}
    assert grouping.x_gatekeeper_accounts >= 20
    assert "'203.0.113.0/24'" in next(o.pattern for o in indicators if "network" in o.labels)

    # Run 2, another provider: the same campaign with new accounts. Each of its requests
    # matches from the first one on; an ordinary account does not.
    intel = tmp_path / "intel"
    intel.mkdir()
    imported = CliRunner().invoke(
        cli, ["intel", "import", str(bundle_path), "--out", str(intel), "--strict"]
    )
    assert imported.exit_code == 0, imported.output
    again = [f"new-farm-{i}" for i in range(5)]
    client, log = await gateway(
        [account(k) for k in again] + [account("teacher", young=False)], intel_path=intel
    )
    campaign = await run_campaign(client, again, "203.0.113", rounds=1)
    benign = await ask(
        client,
        "teacher",
        "Summarise the causes of the French revolution.",
        ip="192.0.2.8",
        agent="Mozilla/5.0",
    )
    await client.aclose()
    ids = [r.headers["x-gatekeeper-decision-id"] for r in [*campaign, benign]]
    events = await logged(log, ids)
    for response in campaign:
        event = events[response.headers["x-gatekeeper-decision-id"]]
        matched = {(m["kind"], m["source"]) for m in event["gatekeeper"]["indicators"]}
        assert matched == {
            ("network", "Provider One"),
            ("user_agent", "Provider One"),
            ("prompt_family", "Provider One"),
        }
        assert "shared_intel" in event["result"]["obligations"]["notes"][1]
    assert "indicators" not in events[benign.headers["x-gatekeeper-decision-id"]]["gatekeeper"]


async def test_readiness_is_degraded_while_a_changed_intel_file_stands_refused(
    tmp_path: Path,
) -> None:
    from gatekeeper.observability.health import readiness

    intel = tmp_path / "intel.json"
    CliRunner().invoke(cli, ["intel", "import", str(BUNDLE), "--out", str(intel)])
    base = Settings.load(DEMO_CONFIG)
    settings = Settings.load(
        DEMO_CONFIG,
        network=base.network.model_dump(),
        policy=base.policy.model_dump(),
        audit={"path": tmp_path / "decisions.jsonl"},
        signals={"intel_path": intel},
    )
    gk = Gatekeeper.from_settings(settings)
    checks = gk.observability.parts.readiness_checks()
    try:
        ready, document = await readiness(checks, 5.0)
        assert ready and document["checks"]["intel"]["intel_indicators"] == 7
        intel.write_text("{ damaged")
        assert gk.signals is not None and gk.signals.intel is not None
        assert await gk.signals.intel.refresh() is False
        ready, document = await readiness(checks, 5.0)
        assert not ready and document["checks"]["intel"]["degraded"] is True
        ready, document = await readiness(
            gk.observability.parts.readiness_checks(), 5.0, degraded_ok=True
        )
        assert ready and document["status"] == "degraded"
    finally:
        await gk.aclose()
