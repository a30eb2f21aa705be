"""The "Writing a rule" example of docs/policy-authoring.md works as the page says.

A new module's refusals, added to the union in decision.rego as the page says, must refuse
(a faster allowed path that tested the modules one by one would silently ignore it).
"""

from __future__ import annotations

import re
from pathlib import Path

from gatekeeper.policy import EmbeddedEngine, load_policy
from tests.policy.conftest import make_input

DOC = (Path(__file__).resolve().parents[2] / "docs" / "policy-authoring.md").read_text()


async def test_a_module_added_to_the_union_refuses(pack_copy: Path) -> None:
    example = re.search(r"```rego\n(# policies/gatekeeper/hosting\.rego\n.*?)```", DOC, re.S)
    assert example, "the example module is no longer in docs/policy-authoring.md"
    (pack_copy / "gatekeeper" / "hosting.rego").write_text(example.group(1))
    decision_rego = pack_copy / "gatekeeper" / "decision.rego"
    text = decision_rego.read_text()
    union = "| data.gatekeeper.distillation.refusals"
    assert union in text
    decision_rego.write_text(text.replace(union, union + " | data.gatekeeper.hosting.refusals", 1))
    engine = EmbeddedEngine(load_policy(pack_copy), check=False)

    doc = make_input("free", "email", "US")
    doc["network"]["is_hosting"] = True
    refused = await engine.decide(doc)
    assert (refused.allow, refused.status) == (False, 403)
    assert [r.code for r in refused.reasons] == ["hosting_network"]

    doc["network"]["is_hosting"] = False
    assert (await engine.decide(doc)).allow
