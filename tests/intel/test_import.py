"""`gatekeeper intel import`: STIX 2.1 bundles (read with stix2) into the intel document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.offline.intel import ImportResult, UnsupportedPattern, import_bundle, pattern_terms
from gatekeeper.signals.intel import payment_hash

BUNDLE = Path(__file__).resolve().parents[2] / "examples" / "intel" / "bundle.json"
PREFIX = "indicator--6a1f0c9e-0c35-4b5e-9a52-1f4f6a2b7d0"


def imported() -> ImportResult:
    return import_bundle(BUNDLE.read_bytes())


def test_the_example_bundle_converts_each_supported_indicator() -> None:
    result = imported()
    by_id = result.indicators
    assert sorted(i[-1] for i in by_id) == ["1", "2", "3", "4", "5", "6", "9"]
    network = by_id[PREFIX + "1"]
    assert network["match"] == {"network": ["203.0.113.128/25", "2001:db8:77::/48"]}
    assert network["source"] == "Example Model Provider"
    assert network["confidence"] == 80
    assert network["valid_from"].startswith("2026-11-01T00:00:00")
    assert network["valid_until"].startswith("2099-12-31T00:00:00")
    assert network["labels"] == ["model-distillation", "network"]
    assert network["indicator_types"] == ["anomalous-activity"]
    assert by_id[PREFIX + "2"]["match"] == {"asn": [64511]}
    assert by_id[PREFIX + "3"]["match"] == {
        "user_agent": ["distill-harvester/2.1", "distill-harvester/2.2"]
    }
    assert by_id[PREFIX + "4"]["match"] == {"payment": [payment_hash("card-farm-0001")]}
    assert len(by_id[PREFIX + "5"]["match"]["prompt_family"]) == 8
    assert by_id[PREFIX + "9"]["match"] == {"network": ["203.0.113.9/32"]}
    assert result.expired == 1


def test_unsupported_patterns_are_reported_not_dropped() -> None:
    reasons = {item["id"][-1]: item["reason"] for item in imported().unsupported}
    assert reasons == {
        "7": "object path domain-name:value",
        "8": "AND (only OR can be matched per request)",
        "9": "term left out: object path domain-name:value",
    }


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[ipv4-addr:value = '203.0.113.7'] WITHIN 60 SECONDS", "qualifiers"),
        ("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '1.2.3.5']", "FOLLOWEDBY"),
        ("[ipv4-addr:value NOT = '1.2.3.4']", "NOT"),
        ("[autonomous-system:number > 64500]", "operator >"),
        ("[x-gatekeeper-payment:fingerprint_sha256 = 'abc']", "not a SHA-256"),
        ("[ipv4-addr:value = 'not-an-address']", "does not appear to be"),
        ("[ipv4-addr:value = ", "not a valid STIX 2.1 pattern"),
    ],
)
def test_patterns_that_are_not_lookups_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(UnsupportedPattern, match=reason):
        pattern_terms(pattern)


def test_in_lists_and_family_ids_are_accepted() -> None:
    match, skipped = pattern_terms(
        "[autonomous-system:number IN (64500, 64511)] OR "
        "[x-gatekeeper-prompt-family:band = 'f-01241a2a7fd84cc'] OR "
        "[network-traffic:src_ref.value ISSUBSET '2001:db8::/32']"
    )
    assert match == {
        "asn": [64500, 64511],
        "prompt_family": ["01241a2a7fd84cc"],
        "network": ["2001:db8::/32"],
    }
    assert skipped == []


def test_a_revoked_or_newer_version_replaces_the_older(tmp_path: Path) -> None:
    bundle = json.loads(BUNDLE.read_text())
    result = import_bundle(json.dumps(bundle))
    for obj in bundle["objects"]:
        if obj["id"] == PREFIX + "1":
            obj["modified"] = "2026-12-01T00:00:00.000Z"
            obj["confidence"] = 95
        if obj["id"] == PREFIX + "2":
            obj["modified"] = "2026-12-01T00:00:00.000Z"
            obj["revoked"] = True
    import_bundle(json.dumps(bundle), result)
    assert result.indicators[PREFIX + "1"]["confidence"] == 95
    assert PREFIX + "2" not in result.indicators
    assert result.revoked == 1


def test_a_document_that_is_not_a_bundle_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"not a STIX 2\.1 bundle"):
        import_bundle(b'{"type": "indicator"}')
    with pytest.raises(ValueError, match=r"not a STIX 2\.1 bundle"):
        import_bundle(b"not json")


def test_cli_writes_the_document_and_lists_what_it_left_out(tmp_path: Path) -> None:
    out = tmp_path / "intel"
    out.mkdir()
    runner = CliRunner()
    result = runner.invoke(cli, ["intel", "import", str(BUNDLE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "bundle.json").read_text())
    assert written["version"] == 1
    assert len(written["indicators"]) == 7
    assert len(written["unsupported"]) == 3
    assert "7 indicators imported" in result.stderr
    assert f"unsupported: {PREFIX}8: AND" in result.stderr
    strict = runner.invoke(cli, ["intel", "import", str(BUNDLE), "--strict"])
    assert strict.exit_code == 1
    assert json.loads(strict.stdout)["version"] == 1
