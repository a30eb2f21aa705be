"""Hot reload: new revisions are checked off the request path and swapped in atomically; a bad
revision is rejected (logged, counted, shown in status) and the last good one keeps deciding."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper import ConfigurationError, Settings
from gatekeeper.policy import (
    EmbeddedEngine,
    OpaEngine,
    ReloadingEngine,
    bundle_bytes,
    load_policy,
    open_engine,
)
from gatekeeper.settings import PolicySettings
from tests.policy._app import chat, decision_events, serving
from tests.policy.conftest import make_input
from tests.policy.opa_server import OpaServer

FR = make_input("pro", "government_id", "FR")


def restrict_fr(repo: Path) -> None:
    """An edit that changes decisions without breaking the pack's tests or cases."""
    data_file = repo / "gatekeeper" / "config" / "jurisdictions" / "data.json"
    data = json.loads(data_file.read_text())
    data["restricted"].append("FR")
    data_file.write_text(json.dumps(data))


def watcher(repo: Path, *, interval: float = 3600) -> ReloadingEngine:
    """An engine whose tests poll with ``check()``: its own watcher (which the first verdict
    starts) must not poll first, or ``check()`` finds the revision already active."""
    return ReloadingEngine(EmbeddedEngine(load_policy(repo)), repo, interval=interval)


async def test_an_edited_directory_becomes_the_active_revision(pack_copy: Path) -> None:
    engine = watcher(pack_copy)
    first = await engine.verdict(FR)
    assert await engine.check() is False  # nothing changed
    restrict_fr(pack_copy)
    assert await engine.check() is True
    second = await engine.verdict(FR)
    assert (first.decision.status, second.decision.status) == (200, 451)
    assert second.revision == engine.revision == load_policy(pack_copy).revision != first.revision
    assert engine.status()["reload"]["reloads"] == 1
    await engine.aclose()


BAD_EDITS = {
    "does-not-compile": (
        "gatekeeper/broken.rego",
        "package gatekeeper.broken\n\nx := {\n",
        "broken.rego",
    ),
    "fails-a-rego-test": (
        "gatekeeper/extra_test.rego",
        "package gatekeeper.extra_test\n\ntest_always_fails if false\n",
        "test_always_fails",
    ),
    "breaks-a-conformance-case": (
        "gatekeeper/config/kyc/data.json",
        json.dumps(
            {
                "levels": {"none": 0, "email": 1, "phone": 2, "payment": 3, "government_id": 4,
                           "business": 5},
                "minimum": "none",
            }
        ),
        "kyc",
    ),
    "invalid-data": ("gatekeeper/config/shadow/data.json", "{not json", "not valid data"),
}  # fmt: skip


@pytest.mark.parametrize("edit", list(BAD_EDITS), ids=list(BAD_EDITS))
async def test_a_bad_revision_is_rejected_and_the_last_good_one_stays(
    edit: str, pack_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = watcher(pack_copy)
    good = engine.revision
    name, text, mentioned = BAD_EDITS[edit]
    (pack_copy / name).write_text(text)
    with caplog.at_level(logging.ERROR, logger="gatekeeper.policy"):
        assert await engine.check() is False
    assert engine.revision == good
    assert (await engine.verdict(make_input("free", "none"))).decision.status == 403
    reload = engine.status()["reload"]
    assert reload["reload_failures"] == 1 and mentioned in reload["last_error"]
    assert "policy reload rejected" in caplog.text and mentioned in caplog.text
    assert await engine.check() is False  # the same broken files are not retried
    assert engine.status()["reload"]["reload_failures"] == 1
    await engine.aclose()


async def test_fixing_a_rejected_revision_activates_it_and_clears_the_error(
    pack_copy: Path,
) -> None:
    engine = watcher(pack_copy)
    broken = pack_copy / "gatekeeper" / "broken.rego"
    broken.write_text("package gatekeeper.broken\n\nx := {\n")
    assert await engine.check() is False
    broken.unlink()
    restrict_fr(pack_copy)
    assert await engine.check() is True
    assert engine.status()["reload"]["last_error"] is None
    assert (await engine.verdict(FR)).decision.status == 451
    await engine.aclose()


FR_CASE = """
  - id: fr-pro-user
    rule: jurisdiction.refusals
    input: {subject: {tier: pro, kyc_level: government_id, kyc_rank: 4}, network: {country: FR}}
    expect: {status: STATUS}
"""


async def test_fixing_only_the_cases_retries_a_revision_rejected_for_a_case(
    pack_copy: Path,
) -> None:
    """The revision covers conformance/cases.yaml: a policy edit rejected for a wrong case is
    checked again (and activated) once only the case is fixed."""
    engine = watcher(pack_copy)
    cases = pack_copy / "conformance" / "cases.yaml"
    original = cases.read_text()
    restrict_fr(pack_copy)
    cases.write_text(original + FR_CASE.replace("STATUS", "200"))
    assert await engine.check() is False
    rejected = engine.status()["reload"]
    assert "fr-pro-user" in rejected["last_error"]
    cases.write_text(original + FR_CASE.replace("STATUS", "451"))  # only the cases change
    assert await engine.check() is True
    reload = engine.status()["reload"]
    assert reload["last_error"] is None and reload["rejected_revision"] is None
    assert reload["last_rejected"]["revision"] == rejected["rejected_revision"]
    assert "fr-pro-user" in reload["last_rejected"]["error"]
    assert (await engine.verdict(FR)).decision.status == 451
    await engine.aclose()


async def test_undoing_a_bad_edit_clears_the_error(pack_copy: Path) -> None:
    engine = watcher(pack_copy)
    good = engine.revision
    broken = pack_copy / "gatekeeper" / "broken.rego"
    broken.write_text("package gatekeeper.broken\n\nx := {\n")
    assert await engine.check() is False
    assert engine.status()["reload"]["last_error"]
    broken.unlink()  # the files are the active revision again
    assert await engine.check() is False
    reload = engine.status()["reload"]
    assert engine.revision == good and reload["last_error"] is None
    assert "broken.rego" in reload["last_rejected"]["error"]
    await engine.aclose()


async def test_a_replaced_bundle_file_is_picked_up(tmp_path: Path, pack_copy: Path) -> None:
    bundle = tmp_path / "policy.tar.gz"
    bundle.write_bytes(bundle_bytes(load_policy(pack_copy), revision="rel-1"))
    engine = ReloadingEngine(EmbeddedEngine(load_policy(bundle)), bundle, interval=3600)
    restrict_fr(pack_copy)
    bundle.write_bytes(bundle_bytes(load_policy(pack_copy), revision="rel-2"))
    assert await engine.check() is True
    verdict = await engine.verdict(FR)
    assert (verdict.revision, verdict.decision.status) == ("rel-2", 451)
    await engine.aclose()


async def test_the_watcher_runs_in_the_background(pack_copy: Path) -> None:
    engine = watcher(pack_copy, interval=0.05)
    await engine.start()
    old = engine.revision
    restrict_fr(pack_copy)
    async with asyncio.timeout(20):
        while engine.revision == old:  # noqa: ASYNC110 (what a user sees: the revision)
            await asyncio.sleep(0.02)
    assert (await engine.verdict(FR)).decision.status == 451
    await engine.aclose()


async def test_log_records_carry_the_revision_that_decided_across_a_reload(
    tmp_path: Path, pack_copy: Path
) -> None:
    old = load_policy(pack_copy).revision
    async with serving(tmp_path, path=pack_copy, reload=True, reload_interval=3600) as (http, gk):
        before = await chat(http, "gk-demo-pro")
        restrict_fr(pack_copy)
        assert await gk.engine.check()  # type: ignore[attr-defined]
        after = await chat(http, "gk-demo-unverified")
    assert (before.status_code, after.status_code) == (200, 403)
    revisions = [
        e["bundles"]["gatekeeper"]["revision"]
        for e in decision_events(tmp_path / "decisions.jsonl")
    ]
    assert revisions == [old, load_policy(pack_copy).revision] and old != revisions[1]


async def test_opa_engine_reloads_by_pushing_and_keeps_the_last_good_revision(
    pack_copy: Path, opa_factory: Callable[..., OpaServer]
) -> None:
    engine = ReloadingEngine(
        OpaEngine(opa_factory().url, source=load_policy(pack_copy), timeout=5.0),
        pack_copy,
        interval=3600,  # the test polls with check(); the watcher must not poll first
    )
    try:
        assert (await engine.verdict(FR)).decision.status == 200
        restrict_fr(pack_copy)
        assert await engine.check() is True
        stricter = await engine.verdict(FR)
        assert (stricter.decision.status, stricter.revision) == (451, engine.revision)
        (pack_copy / "gatekeeper" / "broken.rego").write_text("package gatekeeper\n\nx := {\n")
        assert await engine.check() is False
        assert await engine.verdict(FR) == stricter
        assert "broken.rego" in engine.status()["reload"]["last_error"]
    finally:
        await engine.aclose()


def test_a_pack_that_fails_its_tests_does_not_start(pack_copy: Path, tmp_path: Path) -> None:
    (pack_copy / "gatekeeper" / "extra_test.rego").write_text(
        "package gatekeeper.extra_test\n\ntest_always_fails if false\n"
    )
    with pytest.raises(ConfigurationError, match="test_always_fails"):
        open_engine(PolicySettings(path=pack_copy))
    assert open_engine(PolicySettings(path=pack_copy, check=False)).revision


def test_reload_needs_a_policy_gatekeeper_can_push() -> None:
    with pytest.raises(ConfigurationError, match="push"):
        open_engine(PolicySettings(engine="opa", reload=True, opa={"push": False}))  # type: ignore[arg-type]


def test_settings_from_the_environment_choose_the_opa_engine(
    monkeypatch: pytest.MonkeyPatch, pack_copy: Path
) -> None:
    monkeypatch.setenv("GATEKEEPER_POLICY__ENGINE", "opa")
    monkeypatch.setenv("GATEKEEPER_POLICY__OPA__URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GATEKEEPER_POLICY__OPA__TIMEOUT", "0.25")
    monkeypatch.setenv("GATEKEEPER_POLICY__PATH", str(pack_copy))
    engine = open_engine(Settings.load().policy)
    assert isinstance(engine, OpaEngine)
    assert (engine.url, engine.timeout) == ("http://127.0.0.1:9", 0.25)


async def test_the_active_source_follows_a_reload(pack_copy: Path) -> None:
    """The decision log reads the policy's own data (its mask rules) from the active source."""
    engine = watcher(pack_copy)
    restrict_fr(pack_copy)
    assert await engine.check()
    assert engine.source is not None
    assert "FR" in engine.source.data["gatekeeper"]["config"]["jurisdictions"]["restricted"]
    await engine.aclose()
