"""The per-request matcher: imported indicators against a request's facts, expiry included."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatekeeper.errors import ConfigurationError
from gatekeeper.offline.intel import import_bundle
from gatekeeper.signals.families import FamilyIndex
from gatekeeper.signals.intel import IntelIndex, IntelSource, load_index
from gatekeeper.signals.skeleton import skeleton

BUNDLE = Path(__file__).resolve().parents[2] / "examples" / "intel" / "bundle.json"
PREFIX = "indicator--6a1f0c9e-0c35-4b5e-9a52-1f4f6a2b7d0"
NOW = datetime(2026, 12, 7, tzinfo=UTC).timestamp()


@pytest.fixture
def intel_file(tmp_path: Path) -> Path:
    path = tmp_path / "intel.json"
    path.write_text(json.dumps(import_bundle(BUNDLE.read_bytes()).document()))
    return path


def ids(matches: list[dict[str, object]]) -> list[tuple[str, object]]:
    return [(str(m["id"])[-1], m["kind"]) for m in matches]


def test_each_kind_matches(intel_file: Path) -> None:
    index = load_index(intel_file)
    assert ids(index.match(NOW, client_ip="203.0.113.200")) == [("1", "network")]
    assert ids(index.match(NOW, client_ip="2001:db8:77:1::5")) == [("1", "network")]
    assert ids(index.match(NOW, client_ip="203.0.113.9")) == [("9", "network")]
    assert index.match(NOW, client_ip="203.0.113.10") == []
    assert ids(index.match(NOW, asn=64511)) == [("2", "asn")]
    assert ids(index.match(NOW, user_agent="distill-harvester/2.2")) == [("3", "user_agent")]
    assert index.match(NOW, user_agent="distill-harvester/2.3") == []
    assert ids(index.match(NOW, payment_fingerprint="card-farm-0001")) == [("4", "payment")]
    assert index.match(NOW, payment_fingerprint="card-farm-0002") == []
    # The same template filled in with other values: the same sketch, so the family matches.
    bands = FamilyIndex.keys(
        skeleton("Think step by step and show your full reasoning: Bruno has 41 apples.")
    )
    assert ids(index.match(NOW, bands=bands)) == [("5", "prompt_family")]
    other = FamilyIndex.keys(skeleton("Translate this sentence into French, please."))
    assert index.match(NOW, bands=other) == []


def test_a_match_names_the_source_and_confidence(intel_file: Path) -> None:
    (match,) = load_index(intel_file).match(NOW, client_ip="203.0.113.129", asn=64500)
    assert match == {
        "id": PREFIX + "1",
        "kind": "network",
        "source": "Example Model Provider",
        "confidence": 80,
    }


def test_several_facts_match_several_indicators_once_each(intel_file: Path) -> None:
    matches = load_index(intel_file).match(
        NOW,
        client_ip="203.0.113.129",
        asn=64511,
        user_agent="distill-harvester/2.1",
        payment_fingerprint="card-farm-0001",
    )
    assert ids(matches) == [("1", "network"), ("2", "asn"), ("3", "user_agent"), ("4", "payment")]


def test_expired_indicators_do_not_match(intel_file: Path) -> None:
    index = load_index(intel_file)
    # indicator 6 (192.0.2.0/24) was valid in January 2020 only.
    assert index.match(NOW, client_ip="192.0.2.44") == []
    january_2020 = datetime(2020, 1, 15, tzinfo=UTC).timestamp()
    assert ids(index.match(january_2020, client_ip="192.0.2.44")) == [("6", "network")]
    # ... and none matches before its valid_from.
    assert index.match(january_2020, client_ip="203.0.113.200") == []


def test_nested_prefixes_all_match() -> None:
    index = IntelIndex(
        [
            {"id": "indicator--a", "match": {"network": ["10.0.0.0/8"]}},
            {"id": "indicator--b", "match": {"network": ["10.1.0.0/16", "10.1.2.3"]}},
        ]
    )
    assert [m["id"] for m in index.match(NOW, client_ip="10.1.2.3")] == [
        "indicator--b",
        "indicator--a",
    ]
    assert [m["id"] for m in index.match(NOW, client_ip="10.9.0.1")] == ["indicator--a"]
    assert index.match(NOW, client_ip="unknown") == []


def test_a_damaged_file_refuses_start_and_a_damaged_reload_keeps_the_last_good(
    intel_file: Path,
) -> None:
    bad = intel_file.with_name("bad.json")
    bad.write_text('{"version": 1, "indicators": [{"id": "x", "match": {"network": ["nope"]}}]}')
    with pytest.raises(ConfigurationError, match=r"signals\.intel_path"):
        IntelSource(bad)

    source = IntelSource(intel_file)
    assert source.index.size == 7

    async def reload() -> bool:
        return await source.refresh()

    assert asyncio.run(reload()) is False  # unchanged
    intel_file.write_text("{ damaged")
    os.utime(intel_file, ns=(1, 1))
    assert asyncio.run(reload()) is False
    assert source.index.size == 7
    assert source.counters["reload_errors"] == 1
    health = asyncio.run(source.health())
    assert health.ok and health.degraded and health.detail["status"] == "degraded"
    intel_file.write_text(
        json.dumps({"version": 1, "indicators": [{"id": "indicator--z", "match": {"asn": [1]}}]})
    )
    assert asyncio.run(reload()) is True
    assert source.index.size == 1
    health = asyncio.run(source.health())
    assert health.ok and not health.degraded
    assert health.detail == {
        "status": "ok",
        "intel_indicators": 1,
        "intel_prefix_lengths": 0,
        "intel_reloads": 1,
        "intel_reload_errors": 1,
    }


def test_a_directory_loads_every_document(intel_file: Path, tmp_path: Path) -> None:
    (tmp_path / "second.json").write_text(
        json.dumps({"version": 1, "indicators": [{"id": "indicator--z", "match": {"asn": [7]}}]})
    )
    index = load_index(tmp_path)
    assert index.size == 8
    assert [m["id"] for m in index.match(NOW, asn=7)] == ["indicator--z"]
