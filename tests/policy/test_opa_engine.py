"""The OPA engine against a real `opa run --server`: push, bundles, pool, failing closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli import cli
from gatekeeper.errors import InvalidDecisionError, PolicyEvaluationError, PolicyLoadError
from gatekeeper.policy import EmbeddedEngine, OpaEngine, PolicySource, Verdict, load_policy
from tests.policy._app import chat, decision_events, serving
from tests.policy.conftest import POLICIES, make_input
from tests.policy.opa_server import OpaServer
from tests.servers import free_port

BROKEN = {
    "undefined": ('decision := {"allow": true} if input.never', "undefined", PolicyEvaluationError),
    "invalid": ('decision := {"allow": "yes"}', "invalid", InvalidDecisionError),
    "conflict": (
        'decision := {"allow": true} if true\n\ndecision := {"allow": false} if true',
        "evaluation",
        PolicyEvaluationError,
    ),
    "slow": (
        'decision := {"allow": true} if count([x | some x in numbers.range(1, 50000000)]) > 0',
        "timeout",
        PolicyEvaluationError,
    ),
}


def policy(rego_body: str, revision: str = "r1") -> PolicySource:
    return PolicySource(revision, {"p.rego": f"package gatekeeper\n\n{rego_body}\n"}, {})


async def test_decides_like_the_embedded_engine_and_stamps_the_pushed_revision(
    opa_factory: Callable[..., OpaServer], pack: PolicySource
) -> None:
    engine = OpaEngine(opa_factory().url, source=pack, timeout=5.0)
    try:
        verdict = await engine.verdict(make_input("pro", "government_id", "DE"))
        assert verdict.revision == pack.revision
        assert verdict.decision == await EmbeddedEngine(pack).decide(
            make_input("pro", "government_id", "DE")
        )
        assert engine.status()["decisions"] == 1 and engine.status()["ready"]
    finally:
        await engine.aclose()


@pytest.mark.parametrize("kind", list(BROKEN), ids=list(BROKEN))
async def test_a_failing_decision_is_a_counted_policy_error_never_an_allow(
    kind: str, opa_factory: Callable[..., OpaServer]
) -> None:
    rego, counter, error = BROKEN[kind]
    # Only the slow policy is meant to time out; the others get time to answer on a busy machine.
    timeout = 0.3 if counter == "timeout" else 5.0
    engine = OpaEngine(opa_factory().url, source=policy(rego), timeout=timeout, check=False)
    try:
        with pytest.raises(error):
            await engine.verdict(make_input())
        assert engine.status()["errors"][counter] == 1
        assert engine.status()["decisions"] == 0
    finally:
        await engine.aclose()


async def test_a_stopped_server_is_a_counted_policy_error(
    opa_factory: Callable[..., OpaServer], pack: PolicySource
) -> None:
    server = opa_factory()
    engine = OpaEngine(server.url, source=pack, timeout=5.0)
    try:
        assert (await engine.decide(make_input())).allow
        server.stop()
        for _ in range(2):
            with pytest.raises(PolicyEvaluationError, match="unreachable"):
                await engine.decide(make_input())
        assert engine.status()["errors"]["unavailable"] == 2
    finally:
        await engine.aclose()


async def test_middleware_refuses_503_policy_error_when_opa_is_down(tmp_path: Path) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}"
    async with serving(tmp_path, engine="opa", path=POLICIES, opa={"url": nothing_there}) as (
        http,
        gk,
    ):
        response = await chat(http)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "policy_error"
    assert gk.counters["policy_errors"] == 1
    assert gk.engine.status()["errors"]["unavailable"] == 1
    [event] = decision_events(tmp_path / "decisions.jsonl")
    assert event["error"]["code"] == "policy_error"
    assert event["result"]["allow"] is False


async def test_middleware_with_opa_serves_and_stamps_the_revision(
    tmp_path: Path, opa_factory: Callable[..., OpaServer], pack: PolicySource
) -> None:
    url = opa_factory().url
    async with serving(tmp_path, engine="opa", path=POLICIES, opa={"url": url, "timeout": 5}) as (
        http,
        _,
    ):
        allowed = await chat(http)
        refused = await chat(http, "gk-demo-unverified")
    assert (allowed.status_code, refused.status_code) == (200, 403)
    events = decision_events(tmp_path / "decisions.jsonl")
    assert {e["bundles"]["gatekeeper"]["revision"] for e in events} == {pack.revision}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("package gatekeeper\n\ndecision := {", "rejected by OPA"),
        ("package gatekeeper.kyc_test\n\ntest_breaks if false\n", "test_breaks"),
    ],
    ids=["does-not-compile", "fails-its-tests"],
)
async def test_a_rejected_revision_leaves_the_last_good_one_on_the_server(
    change: str, message: str, opa_factory: Callable[..., OpaServer], pack: PolicySource
) -> None:
    engine = OpaEngine(opa_factory().url, source=pack, timeout=5.0)
    try:
        before = await engine.verdict(make_input("free", "none"))
        bad = PolicySource("bad", {**pack.modules, "gatekeeper/zz_test.rego": change}, pack.data)
        with pytest.raises(PolicyLoadError, match=message):
            await engine.activate(bad)
        after = await engine.verdict(make_input("free", "none"))
        assert after == before and after.revision == pack.revision
    finally:
        await engine.aclose()


async def test_decisions_during_a_swap_carry_the_revision_that_decided(
    opa_factory: Callable[..., OpaServer], pack: PolicySource
) -> None:
    engine = OpaEngine(opa_factory().url, source=pack, pool_size=4, timeout=5.0)
    data = json.loads(json.dumps(pack.data))
    data["gatekeeper"]["config"]["jurisdictions"]["restricted"].append("FR")
    stricter = PolicySource("stricter", pack.modules, data)

    def burst() -> asyncio.Future[list[Verdict]]:
        return asyncio.gather(
            *(engine.verdict(make_input("pro", "government_id", "FR")) for _ in range(30))
        )

    try:
        await engine.start()
        before = burst()  # in flight when the swap starts: they finish under the old revision
        await asyncio.sleep(0)
        swap = asyncio.ensure_future(engine.activate(stricter))
        await asyncio.sleep(0)
        after = burst()  # arrive during the swap: they wait for it, then use the new revision
        await swap
        outcomes = {(v.revision, v.decision.status) for v in await before + await after}
        assert outcomes == {(pack.revision, 200), ("stricter", 451)}
        assert engine._client._connector.limit == 4
    finally:
        await engine.aclose()


async def test_a_bundle_from_policy_build_runs_in_opa_and_stamps_its_revision(
    tmp_path: Path, opa_factory: Callable[..., OpaServer], pack: PolicySource
) -> None:
    bundle = tmp_path / "bundle.tar.gz"
    built = CliRunner().invoke(
        cli, ["policy", "build", str(POLICIES), "-o", str(bundle), "--revision", "rel-7"]
    )
    assert built.exit_code == 0, built.output
    server = opa_factory("-b", str(bundle))
    engine = OpaEngine(server.url, push=False, timeout=5.0)
    try:
        verdict = await engine.verdict(make_input("free", "none"))
        assert verdict.revision == "rel-7"
        assert verdict.decision == await EmbeddedEngine(load_policy(bundle)).decide(
            make_input("free", "none")
        )
        with pytest.raises(PolicyLoadError, match="own bundles"):
            await engine.activate(pack)
    finally:
        await engine.aclose()


async def test_start_with_opa_down_does_not_raise_and_decisions_fail_closed(
    pack: PolicySource, caplog: pytest.LogCaptureFixture
) -> None:
    engine = OpaEngine(f"http://127.0.0.1:{free_port()}", source=pack)
    try:
        await engine.start()  # at ASGI start-up: gatekeeper still starts
        assert "OPA engine not ready" in caplog.text
        assert engine.status()["ready"] is False and engine.status()["last_error"]
        with pytest.raises(PolicyEvaluationError, match="not ready"):
            await engine.verdict(make_input())
    finally:
        await engine.aclose()
