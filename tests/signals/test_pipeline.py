"""The signals stage inside the middleware, with the default pack: a small campaign of
accounts sharing a payment card is stepped up, and the decision log shows why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper.runtime import Gatekeeper
from tests.servers import demo_stack, written_entries

TEMPLATE = "Think step by step and show your full reasoning: {name} has {n} apples."
NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jonas"]


def subjects_file(tmp: Path) -> Path:
    accounts = [
        {
            "key": f"sk-farm-{i}",
            "id": f"farm-{i}",
            "org": f"org-{i}",
            "tier": "pro",
            "kyc_level": "payment",
            "account_created": "2025-01-01",
            "payment_fingerprint": "card-shared",
        }
        for i in range(10)
    ]
    accounts.append(
        {
            "key": "sk-alone",
            "id": "alone",
            "tier": "pro",
            "kyc_level": "payment",
            "account_created": "2025-01-01",
        }
    )
    path = tmp / "subjects.json"
    path.write_text(json.dumps({"subjects": accounts}))
    return path


Gateway = Callable[..., Any]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    built: list[Gatekeeper] = []

    async def build(**signals: Any) -> tuple[httpx.AsyncClient, Path]:
        log = tmp_path / f"decisions-{len(built)}.jsonl"
        gk, client = demo_stack(subjects_file(tmp_path), log, signals=signals)
        built.append(gk)
        return client, log

    yield build
    for gk in built:
        await gk.aclose()


def ask(client: httpx.AsyncClient, key: str, prompt: str) -> Any:
    # One User-Agent per account: the accounts share 127.0.0.1, and network + user agent is
    # a link too (settings signals.link_by); here only the payment card links them.
    body = {
        "model": "demo-reasoner",
        "reasoning_effort": "high",
        "messages": [{"role": "user", "content": prompt}],
    }
    headers = {"authorization": f"Bearer {key}", "user-agent": f"client-of-{key}"}
    return client.post("/v1/chat/completions", json=body, headers=headers)


async def test_ten_accounts_on_one_card_alone_are_not_graded(
    gateway: Gateway, tmp_path: Path
) -> None:
    # Issue 18: ten accounts on one card asking for steps is a classroom as much as a farm;
    # the pack grades only evidence that spans more accounts (cluster_large is 15), and
    # conformance case distillation-suspect-below-step-up-is-403 covers the step-up.
    client, log = await gateway()
    statuses = []
    for round_ in range(2):
        for i, name in enumerate(NAMES):
            response = await ask(client, f"sk-farm-{i}", TEMPLATE.format(name=name, n=i + round_))
            statuses.append(response.status_code)
    assert statuses[0] == 200  # nothing is known about the first request
    refused = await ask(client, "sk-farm-0", TEMPLATE.format(name="Zoe", n=99))
    assert refused.status_code == 200
    # An account linked to nobody, sending the same prompt, is left alone.
    alone = await ask(client, "sk-alone", TEMPLATE.format(name="Zoe", n=99))
    assert alone.status_code == 200

    await client.aclose()
    decision_id = refused.headers["x-gatekeeper-decision-id"]
    record = None
    for _ in range(100):  # the decision log writes in the background
        record = next((e for e in written_entries(log) if e["decision_id"] == decision_id), None)
        if record is not None:
            break
        await asyncio.sleep(0.05)
    assert record is not None
    signals = record["input"]["signals"]
    assert signals["available"] and signals["cluster"]["size"] == 10
    assert signals["cluster"]["linked_by"] == ["payment"]
    assert signals["cot_patterns"] == ["step_by_step", "show_reasoning"]
    obligations = record["result"]["obligations"]
    assert obligations["flag_for_review"] is False
    assert obligations["notes"] == []


async def test_with_the_stage_off_the_policy_sees_no_signals(gateway: Gateway) -> None:
    client, _ = await gateway(enabled=False)
    for i, name in enumerate(NAMES):
        response = await ask(client, f"sk-farm-{i}", TEMPLATE.format(name=name, n=i))
        assert response.status_code == 200
    again = await ask(client, "sk-farm-0", TEMPLATE.format(name="Zoe", n=1))
    assert again.status_code == 200
