"""Do two packs decide alike? `python -m bench.policy_grid OLD_DIR NEW_DIR`.

Before a change to the default pack that should not change a decision (a rewrite for speed),
copy the pack (``git archive HEAD policies | tar -x -C /tmp/old``), change it, and compare: every
input of a grid (tiers, KYC levels, countries, orgs, model and non-model requests, signal
profiles from none to strong evidence, an exemption flag, account ages, models with and without
a release date, hosting ASNs) under four data variants (the pack's data; every refusal in
shadow mode; a launch window; the distillation module off) is evaluated by both packs with the
embedded engine, and the decisions, validated and with their quota templates filled in as
gatekeeper enforces them, are compared field by field. Exit status 1 if any differs; the first
differences are printed. A quota's ``scope`` is left out of the comparison, so a pack that
returns templates can be compared with one that builds its quotas itself.

``--vm DIR`` compares instead the two evaluators of the embedded engine on one pack: regorus's
interpreter, and its compiled VM as gatekeeper prepares the pack for it (gatekeeper/policy/vm.py):
the check to run after a regorus upgrade, or on a pack of your own before trusting the VM with it.

The full grid is 82,944 inputs per variant (about four minutes); ``--limit N`` takes a
reproducible random sample of N inputs per variant.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.contract import Input
from gatekeeper.policy import PolicySource, load_policy
from gatekeeper.policy.embedded import compile_source
from gatekeeper.policy.engine import decision_from_json
from gatekeeper.policy.vm import Vm, prepare

SIGNALS: dict[str, dict[str, Any]] = {
    "off": {"available": False},
    "benign": {"available": True, "cluster": {"id": "c-1", "size": 1}},
    "watch": {"available": True, "cot_elicitation": 0.8, "template_repetition": 0.6,
              "subject": {"template_count": 6}, "cluster": {"id": "c-abc", "size": 1}},
    "suspect": {"available": True, "cot_elicitation": 0.8, "template_repetition": 0.6,
                "subject": {"template_count": 6}, "cluster": {"id": "c-abc", "size": 12}},
    "strong": {"available": True, "cot_elicitation": 0.8, "template_repetition": 0.6,
               "subject": {"template_count": 6, "reasoning_share": 0.95,
                           "requests": {"1h": 50}},
               "cluster": {"id": "c-abc", "size": 50, "requests": {"1h": 5000}}},
    "strong-no-cluster-id": {"available": True, "cot_elicitation": 0.9,
                             "template_repetition": 0.9, "subject": {"template_count": 9},
                             "cluster": {"id": None, "size": 60}},
}  # fmt: skip

#: Data changes, each applied over the pack's own ``data.gatekeeper.config``.
VARIANTS: dict[str, dict[str, Any]] = {
    "pack data": {},
    "shadow": {"shadow": {"codes": ["kyc_insufficient", "jurisdiction_restricted",
                                    "distillation_suspected"]}},
    "launch window": {"launch": {"releases": {"test-model": "2025-12-25T00:00:00Z"}}},
    "distillation off": {"distillation": {"enabled": False}},
}  # fmt: skip


def grid(limit: int = 0) -> Iterator[dict[str, Any]]:
    """The grid's input documents (a reproducible sample of ``limit`` of them, if set),
    validated as gatekeeper would send them."""
    dims = list(
        itertools.product(
            ["free", "pro", "enterprise", "research", "education", "platinum"],
            ["none", "email", "phone", "payment", "government_id", "business"],
            ["US", "KP", None, ""],
            ["o1", None, ""],
            ["openai_chat", None],
            list(SIGNALS),
            [[], ["distillation_exempt"]],
            [None, 5],
            ["demo-reasoner", "test-model"],
            [64500, None],
        )
    )
    random.Random(7).shuffle(dims)
    for tier, kyc, country, org, dialect, signals, flags, age, model, asn in dims[: limit or None]:
        doc = {
            "subject": {"id": "s1", "org": org, "tier": tier, "kyc_level": kyc,
                        "flags": flags, "account_age_days": age},
            "network": {"client_ip": "203.0.113.7", "country": country, "asn": asn},
            "request": {"method": "POST", "path": "/v1/chat/completions", "dialect": dialect,
                        "model": model, "estimated_tokens": 321},
            "signals": SIGNALS[signals],
            "time": {"unix_ns": 1767225600000000000, "rfc3339": "2026-01-01T00:00:00Z",
                     "weekday": 3, "hour_utc": 0},
        }  # fmt: skip
        yield Input.model_validate(doc).model_dump(mode="json")


def with_data(source: PolicySource, patch: dict[str, Any]) -> PolicySource:
    out = copy.deepcopy(source)
    config = out.data["gatekeeper"]["config"]
    for key, value in patch.items():
        config[key] = {**config[key], **value}
    return out


def decide(engine: Any, raw: str, doc: dict[str, Any]) -> Any:
    engine.set_input_json(raw)
    try:
        decision = decision_from_json(engine.eval_rule_as_json("data.gatekeeper.decision"), doc)
    except Exception as exc:  # a policy error is an outcome to compare too
        return f"error: {exc}"
    out = decision.model_dump(mode="json")
    for quota in out["quotas"]:
        quota.pop("scope", None)
    return out


class _VmEvaluator:
    """The VM behind the interpreter's two calls, so ``decide`` takes either."""

    def __init__(self, source: PolicySource) -> None:
        plan = prepare(source.policy_modules, source.data, "data.gatekeeper.decision")
        if plan.program is None:
            raise SystemExit(f"the VM is not used for this pack: {plan.reason}")
        self._vm = Vm(plan, orjson.dumps(source.data).decode())
        self._input = ""

    def set_input_json(self, raw: str) -> None:
        self._input = raw

    def eval_rule_as_json(self, rule: str) -> str:
        return self._vm.evaluate_json(self._input)


def compare(old: Path, new: Path, limit: int, shown: int = 5, *, vm: bool = False) -> int:
    """Decisions of ``old`` and ``new`` that differ (with ``vm``: ``old`` on the interpreter,
    ``new`` on the VM)."""
    docs = list(grid(limit))
    sources = load_policy(old), load_policy(new)
    total = differ = 0
    for name, patch in VARIANTS.items():
        before = compile_source(with_data(sources[0], patch), tests=False)
        after = (_VmEvaluator if vm else partial(compile_source, tests=False))(
            with_data(sources[1], patch)
        )
        for doc in docs:
            raw = orjson.dumps(doc).decode()
            a, b = decide(before, raw, doc), decide(after, raw, doc)
            total += 1
            if a != b:
                differ += 1
                if differ <= shown:
                    print(f"differs ({name}): input {raw}\n  {old}: {a}\n  {new}: {b}")
    print(f"{total} decisions compared ({len(docs)} inputs x {len(VARIANTS)} data variants), "
          f"{differ} differ")  # fmt: skip
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the pack before the change")
    parser.add_argument("new", type=Path, nargs="?", help="the pack after it")
    parser.add_argument("--limit", type=int, default=0, help="inputs per variant (0: all)")
    parser.add_argument(
        "--vm", action="store_true", help="compare the interpreter and the VM on one pack"
    )
    args = parser.parse_args()
    if args.new is None and not args.vm:
        parser.error("give the pack after the change (or --vm)")
    differ = compare(args.old, args.new or args.old, args.limit, vm=args.vm)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
