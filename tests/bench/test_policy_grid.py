"""bench.policy_grid tells a pack author whether a rewrite changed any decision."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.policy_grid import compare

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_the_same_pack_decides_alike() -> None:
    assert compare(POLICIES, POLICIES, limit=40) == 0


def test_a_changed_decision_is_found_and_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = tmp_path / "policies"
    shutil.copytree(POLICIES, changed)
    jur = changed / "gatekeeper" / "config" / "jurisdictions" / "data.json"
    data = json.loads(jur.read_text())
    data["restricted"].append("US")
    jur.write_text(json.dumps(data))
    assert compare(POLICIES, changed, limit=40) > 0
    assert "jurisdiction_restricted" in capsys.readouterr().out


def test_the_vm_decides_the_default_pack_like_the_interpreter() -> None:
    assert compare(POLICIES, POLICIES, limit=300, vm=True) == 0
