"""`gatekeeper intel export`: which decisions count as flagged, how they are grouped, and what
is never exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import stix2
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.offline.intel import export_bundle, import_bundle
from gatekeeper.signals.intel import load_index, payment_hash


def event(
    n: int,
    subject: str,
    level: str,
    *,
    cluster: str | None = "c-1",
    ip: str = "203.0.113.5",
    card: str = "card-x",
    day: int = 1,
) -> dict[str, Any]:
    return {
        "decision_id": f"d-{n}",
        "timestamp": f"2026-12-{day:02d}T10:00:{n % 60:02d}Z",
        "input": {
            "subject": {"id": subject, "payment_fingerprint": card},
            "network": {"client_ip": ip, "asn": 64500},
            "request": {"user_agent": "harvest-kit/0.9"},
            "signals": {
                "cluster": {"id": cluster, "size": 3},
                "family": {"id": "f-01241a2a7fd84cc"},
            },
        },
        "result": {
            "allow": True,
            "obligations": {"notes": [f"distillation:{level}", "evidence:family_spread+templated"]},
        },
        "gatekeeper": {"kind": "decision"},
    }


def write_log(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_only_flagged_decisions_are_exported_and_grouped_by_cluster(tmp_path: Path) -> None:
    events = [
        event(1, "a", "suspect"),
        event(2, "b", "strong"),
        event(3, "c", "watch"),  # below --min-level suspect
        event(4, "d", "suspect", cluster=None, ip="192.0.2.9"),  # alone: its own cluster
        event(5, "e", "none"),
    ]
    result = export_bundle(events, producer="P")
    assert result.clusters == 1  # the singleton shares nothing with anyone (min 2 accounts)
    indicators = [o for o in result.bundle.objects if o.type == "indicator"]
    kinds = {o.labels[1] for o in indicators}
    assert kinds == {"network", "user_agent", "payment", "prompt_family"}
    assert {o.confidence for o in indicators} == {85}  # the cluster's highest grade: strong
    payment = next(o for o in indicators if "payment" in o.labels)
    assert payment_hash("card-x") in payment.pattern
    assert "card-x'" not in payment.pattern
    # Imported elsewhere, every exported value matches.
    imported = import_bundle(result.bundle.serialize())
    assert imported.unsupported == []
    path = tmp_path / "intel.json"
    path.write_text(json.dumps(imported.document()))
    index = load_index(path)
    matched = {
        m["kind"]
        for m in index.match(
            1_796_212_800.0,  # 2026-12-02: within valid_from .. valid_until
            client_ip="203.0.113.77",
            user_agent="harvest-kit/0.9",
            payment_fingerprint="card-x",
            bands=["0:1241a2a.7fd84cc"],
        )
    }
    assert matched == kinds
    # --min-level watch takes the watch decision in too; --min-accounts 1 the singleton.
    assert export_bundle(events, min_level="watch", min_subjects=1).clusters == 2


def test_masked_payment_fingerprints_are_left_out_and_counted() -> None:
    events = [
        event(1, "a", "suspect", card="hmac-sha256:0f0f"),
        event(2, "b", "suspect", card="hmac-sha256:0f0f"),
    ]
    result = export_bundle(events)
    assert result.masked_payments == 2
    labels = {o.labels[1] for o in result.bundle.objects if o.type == "indicator"}
    assert "payment" not in labels and "network" in labels


def test_cli_since_and_output(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "decisions.jsonl",
        [
            event(1, "a", "suspect", day=1),
            event(2, "b", "suspect", day=1),
            event(3, "a", "suspect", ip="198.51.100.1", day=5),
            event(4, "b", "suspect", ip="198.51.100.2", day=5),
        ],
    )
    out = tmp_path / "bundle.json"
    result = CliRunner().invoke(
        cli, ["intel", "export", "--log", str(log), "--since", "2026-12-03", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "1 flagged clusters, 4 indicators exported" in result.stderr
    bundle = stix2.parse(out.read_text(), allow_custom=True)
    network = next(o for o in bundle.objects if o.type == "indicator" and "network" in o.labels)
    assert "198.51.100.0/24" in network.pattern and "203.0.113" not in network.pattern
    assert network.valid_from.day == 5 and (network.valid_until - network.valid_from).days == 30
    (grouping,) = [o for o in bundle.objects if o.type == "grouping"]
    assert grouping.x_gatekeeper_cluster == "cluster:c-1"
    assert grouping.x_gatekeeper_evidence == ["family_spread", "templated"]
    bad = CliRunner().invoke(cli, ["intel", "export", "--log", str(log), "--since", "soon"])
    assert bad.exit_code == 2
