"""Hot reload's activations and rejections: counted, exported as metrics, logged with revisions."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from gatekeeper.observability.collectors import _part_counters
from gatekeeper.policy import EmbeddedEngine, ReloadingEngine, load_policy
from tests.policy.test_reload import restrict_fr


def reload_samples(engine: ReloadingEngine) -> dict[str, float]:
    parts = SimpleNamespace(engine=engine, quotas=None, geo=None)  # what the counters read
    families = {f.name: f for f in _part_counters(parts)}  # type: ignore[arg-type]
    family = families["gatekeeper_policy_reloads"]
    return {s.labels["outcome"]: s.value for s in family.samples if s.name.endswith("_total")}


async def test_activations_and_rejections_are_counted_logged_and_exported(
    pack_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = ReloadingEngine(EmbeddedEngine(load_policy(pack_copy)), pack_copy, interval=3600)
    first = engine.revision
    assert reload_samples(engine) == {"activated": 0, "rejected": 0}

    restrict_fr(pack_copy)
    with caplog.at_level(logging.INFO, logger="gatekeeper.policy"):
        assert await engine.check() is True
    second = engine.revision
    assert f"policy reload: revision {second} activated (was {first})" in caplog.text

    caplog.clear()
    (pack_copy / "gatekeeper" / "extra_test.rego").write_text(
        "package gatekeeper.extra_test\n\ntest_always_fails if false\n"
    )
    rejected = load_policy(pack_copy).revision
    with caplog.at_level(logging.INFO, logger="gatekeeper.policy"):
        assert await engine.check() is False
    record = next(r for r in caplog.records if "rejected" in r.getMessage())
    assert record.levelno == logging.ERROR
    assert f"revision {rejected} (" in record.getMessage()
    assert "test_always_fails" in record.getMessage()
    assert f"revision {second} stays active" in record.getMessage()
    assert reload_samples(engine) == {"activated": 1, "rejected": 1}
    await engine.aclose()
