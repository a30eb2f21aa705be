"""Jurisdiction tags: configured per tag (``network.jurisdiction_tags``), set on every decision
event from the client's country, and counted by ``audit stats`` (charted by ``audit report``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from gatekeeper.cli.main import cli
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import NetworkSettings, Settings
from tests.servers import DEMO_CONFIG, demo_client


def test_tags_are_listed_per_tag_and_looked_up_per_country() -> None:
    network = NetworkSettings(jurisdiction_tags={"EU": ["de", "FR"], "OFAC": ["KP"], "G7": ["DE"]})
    assert network.jurisdiction_tags == {"EU": ["DE", "FR"], "OFAC": ["KP"], "G7": ["DE"]}
    assert network.tags_by_country() == {"DE": ["EU", "G7"], "FR": ["EU"], "KP": ["OFAC"]}


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param({"EU": ["Germany"]}, id="not-a-country-code"),
        pytest.param({" ": ["DE"]}, id="empty-tag"),
    ],
)
def test_bad_tags_are_refused_at_start(tags: dict[str, list[str]]) -> None:
    with pytest.raises(ValidationError):
        NetworkSettings(jurisdiction_tags=tags)


async def test_every_event_carries_the_tags_of_the_client_country(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    settings = Settings.load(DEMO_CONFIG, audit={"path": log})  # EU and OFAC, as shipped
    gk = Gatekeeper.from_settings(settings)
    body = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "hi"}]}
    async with demo_client(gk) as client:
        for ip in ("192.0.2.7", "198.51.100.7", "127.0.0.1"):  # DE, KP, US (demo GeoIP)
            headers = {"authorization": "Bearer gk-demo-pro", "x-forwarded-for": ip}
            await client.post("/v1/chat/completions", json=body, headers=headers)
    await gk.aclose()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    tags = [
        (e["input"]["network"]["country"], e["input"]["network"]["jurisdiction_tags"])
        for e in events
        if e["gatekeeper"]["kind"] == "decision"
    ]
    assert tags == [("DE", ["EU"]), ("KP", ["OFAC"]), ("US", [])]

    result = CliRunner().invoke(cli, ["audit", "stats", "--json", str(log)])
    assert json.loads(result.stdout)["jurisdictions"] == {"EU": {"allow": 1}, "OFAC": {"deny": 1}}
    result = CliRunner().invoke(cli, ["audit", "query", "--json", "--tag", "OFAC", str(log)])
    found = [json.loads(line)["input"]["network"] for line in result.stdout.splitlines()]
    assert [network["country"] for network in found] == ["KP"]
