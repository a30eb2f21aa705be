"""docs/policy-authoring.md stays true: contract tables, commands and settings."""

from __future__ import annotations

import pytest

from gatekeeper.cli.policy import policy
from gatekeeper.settings import OpaSettings, PolicySettings
from tests.policy.doc_tables import PAGE, render

DOC = PAGE.read_text()


def test_the_contract_tables_are_generated_from_the_models() -> None:
    assert render(DOC) == DOC, "run `python -m tests.policy.doc_tables` to regenerate them"


@pytest.mark.parametrize("command", sorted(policy.commands))
def test_every_policy_command_is_documented(command: str) -> None:
    assert f"gatekeeper policy {command}" in DOC


@pytest.mark.parametrize(
    "setting",
    [f"policy.{name}" for name in PolicySettings.model_fields if name != "opa"]
    + [f"policy.opa.{name}" for name in OpaSettings.model_fields],
)
def test_every_policy_setting_is_documented(setting: str) -> None:
    assert f"| `{setting}` |" in DOC
