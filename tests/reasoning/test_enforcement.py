"""The reasoning budget: a quota that meters exposed reasoning and degrades the mode to drop,
checked and charged through the quota store's public API (a real memory store, a real Redis
that is down)."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.contract import QuotaSpec, ReasoningPolicy
from gatekeeper.dialects import OpenAIChat
from gatekeeper.quota import MemoryQuotaStore, QuotaStore, TokenReservation, open_quota_store
from gatekeeper.reasoning.continuity import MemoryVault
from gatekeeper.reasoning.enforcement import ReasoningEnforcement, ReasoningSetup
from gatekeeper.reasoning.summarize import ExtractiveSummariser
from gatekeeper.settings import Settings
from tests.reasoning.recorded import CHAT_JSON, respond
from tests.servers import free_port

REQUESTS = QuotaSpec(name="requests", key="subject:s:requests", capacity=10, rate=10, period=60)


def budget(capacity: int = 100, on_store_error: str = "deny") -> QuotaSpec:
    return QuotaSpec.model_validate(
        {
            "name": "reasoning",
            "key": "subject:s:reasoning",
            "unit": "reasoning_tokens",
            "capacity": capacity,
            "rate": 1,
            "period": 86400,
            "cost": 500,
            "on_store_error": on_store_error,
        }
    )


def enforcement(mode: str = "full", **policy: Any) -> ReasoningEnforcement:
    setup = ReasoningSetup.of(
        Settings().shaping, summariser=ExtractiveSummariser(), vault=MemoryVault(), key_prefix="gk"
    )
    return ReasoningEnforcement(
        setup, OpenAIChat(), "s", ReasoningPolicy.model_validate({"mode": mode, **policy})
    )


async def check(store: QuotaStore, e: ReasoningEnforcement, specs: list[QuotaSpec]) -> Any:
    acquired = e.quotas(specs)
    result = await store.acquire(acquired)
    e.apply_budget(result, specs)
    return acquired, result


def test_the_budget_quota_is_checked_at_no_cost_and_never_refuses() -> None:
    e = enforcement(budget_quota="reasoning")
    acquired = e.quotas([REQUESTS, budget()])
    assert acquired[0] is REQUESTS
    assert (acquired[1].cost, acquired[1].on_store_error) == (0, "allow")
    assert enforcement("drop", budget_quota="reasoning").quotas([budget()])[0].cost == 0


async def test_a_spent_budget_degrades_to_drop_and_exposure_is_charged_after() -> None:
    store = MemoryQuotaStore()
    spec = budget(capacity=100)
    e = enforcement(budget_quota="reasoning")
    acquired, result = await check(store, e, [REQUESTS, spec])
    assert e.policy.mode == "full" and e.budget == {"quota": "reasoning", "remaining": 100.0}
    # The response showed 150 reasoning tokens: settling charges them (a debt).
    shaper = e.new_shaper()
    assert shaper is not None
    await respond([CHAT_JSON.body], shaper=shaper, content_type=b"application/json")
    assert shaper.stats.exposed_tokens > 100
    reservation = TokenReservation.open(store, acquired, result, prompt_chars=0)
    assert reservation is not None
    await reservation.settle(shaper.stats)
    after = enforcement(budget_quota="reasoning")
    await check(store, after, [REQUESTS, spec])
    assert after.policy.mode == "drop"
    assert after.budget == {"quota": "reasoning", "remaining": 0.0, "degraded": "budget spent"}
    assert after.new_shaper().stats.mode == "full"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mode", "asked", "expected"), [("summary", None, 30), ("truncate", 20, 20), ("full", 99, 99)]
)
async def test_what_is_left_caps_summary_and_truncate(
    mode: str, asked: int | None, expected: int
) -> None:
    e = enforcement(mode, budget_quota="reasoning", max_tokens=asked)
    await check(MemoryQuotaStore(), e, [budget(capacity=30)])
    assert (e.policy.mode, e.policy.max_tokens) == (mode, expected)


async def test_a_budget_quota_missing_from_the_decision_degrades_to_drop() -> None:
    e = enforcement("summary", budget_quota="reasoning")
    await check(MemoryQuotaStore(), e, [REQUESTS])
    assert e.policy.mode == "drop"
    assert e.budget == {
        "quota": "reasoning",
        "degraded": "budget quota not among the decision's quotas",
    }


@pytest.mark.parametrize(
    ("on_store_error", "mode", "unchecked"), [("deny", "drop", None), ("allow", "full", True)]
)
async def test_a_store_outage_degrades_a_deny_budget_and_spares_an_allow_one(
    on_store_error: str, mode: str, unchecked: bool | None
) -> None:
    store = open_quota_store(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    e = enforcement(budget_quota="reasoning")
    try:
        await check(store, e, [budget(on_store_error=on_store_error)])
    finally:
        await store.aclose()
    assert e.policy.mode == mode
    assert e.budget is not None and e.budget.get("unchecked") == unchecked


async def test_the_record_says_what_was_asked_and_what_was_applied() -> None:
    e = enforcement("summary", budget_quota="reasoning")
    await check(MemoryQuotaStore(), e, [])
    responder, _ = await respond(
        [CHAT_JSON.body], shaper=e.new_shaper(), content_type=b"application/json"
    )
    record = e.record(responder)
    assert (record["mode"], record["applied_mode"]) == ("summary", "drop")
    assert record["seen_tokens"] == record["removed_tokens"] > 0
    assert record["continuity"] == {"restored": 0, "kept": 0, "unkept": 0, "errors": 0}
