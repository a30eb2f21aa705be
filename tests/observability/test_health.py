"""``/healthz`` and ``/readyz``: served by the middleware, unprotected; the detail only with
``observability.token`` (or ``public_detail``, which the ``protected`` fixture turns on) and on
the metrics port."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper import __version__
from gatekeeper.audit import DecisionLog
from gatekeeper.audit.sinks import JsonlFileSink
from gatekeeper.health import Health, PartHealth
from gatekeeper.identity.stores import RedisSubjectStore
from gatekeeper.observability.health import check_document, check_part, readiness
from tests.observability.conftest import Factory, bearer
from tests.servers import free_port

PRIVATE = {"public_detail": False}


async def test_liveness_is_answered_before_any_protection(protected: Factory) -> None:
    async with protected() as p:
        response = await p.client.get("/healthz")
    assert response.status_code == 200
    # The middleware's answer (with its version), not the demo app's own /healthz.
    assert response.json() == {"status": "ok", "version": __version__}
    assert "x-gatekeeper-decision-id" not in response.headers


async def test_by_default_the_app_port_says_status_only(protected: Factory) -> None:
    storage = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    async with protected(quota={"storage": storage}, observability=PRIVATE) as p:
        live = await p.client.get("/healthz")
        ready = await p.client.get("/readyz")
        metrics = await p.client.get("/metrics")
    assert live.json() == {"status": "ok"}
    assert (ready.status_code, ready.json()) == (200, {"status": "degraded"})
    assert "x-gatekeeper-worker-pid" not in ready.headers
    assert metrics.status_code == 404 and "metrics_port" in metrics.json()["error"]
    assert "gatekeeper_" not in metrics.text


async def test_the_token_opens_the_detail_and_the_metrics(protected: Factory) -> None:
    observability = {**PRIVATE, "token": "ops-token-1"}
    async with protected(observability=observability) as p:
        anonymous = await p.client.get("/metrics")
        wrong = await p.client.get("/readyz", headers=bearer("gk-demo-pro"))
        ready = await p.client.get("/readyz", headers=bearer("ops-token-1"))
        metrics = await p.client.get("/metrics", headers=bearer("ops-token-1"))
        live = await p.client.get("/healthz", headers=bearer("ops-token-1"))
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == {"status": "ready"}
    assert ready.json()["checks"]["policy"]["revision"]
    assert "gatekeeper_build_info" in metrics.text
    assert live.json()["version"] == __version__


async def test_the_metrics_port_serves_the_readiness_detail(protected: Factory) -> None:
    observability = {**PRIVATE, "metrics_port": 0}
    async with protected(observability=observability) as p:
        await p.chat("gk-demo-pro")
        port = p.gk.observability.listener_port
        assert port is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as ops:
            ready = await ops.get("/readyz")
            live = await ops.get("/healthz")
            metrics = await ops.get("/metrics")
        public = await p.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["policy"]["revision"] == p.gk.engine.revision
    assert ready.json()["pid"] == int(ready.headers["x-gatekeeper-worker-pid"])
    assert live.json()["version"] == __version__
    assert 'gatekeeper_decisions_total{outcome="allow",reason="none"} 1.0' in metrics.text
    assert public.json() == {"status": "ready"}


async def test_readiness_reports_every_part(protected: Factory) -> None:
    async with protected() as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 200
    document = response.json()
    assert document["status"] == "ready"
    assert set(document["checks"]) == {"policy", "subjects", "quotas", "decision_log", "geoip"}
    assert document["checks"]["geoip"]["status"] == "ok"
    assert p.gk.geo is not None
    assert document["checks"]["geoip"]["networks"] == p.gk.geo.networks
    assert document["checks"]["policy"]["revision"] == p.gk.engine.revision
    assert document["checks"]["policy"]["evaluator"] == "vm"
    assert document["checks"]["policy"]["vm"]["mismatches"] == 0
    assert "subject.tier" in document["checks"]["policy"]["input_paths"]
    assert all(check["ok"] for check in document["checks"].values())


async def test_unreachable_quota_store_can_make_the_instance_not_ready(
    protected: Factory,
) -> None:
    storage = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    strict = {"ready_when_degraded": False}
    async with protected(quota={"storage": storage}, observability=strict) as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 503
    document = response.json()
    assert document["status"] == "not_ready"
    assert document["checks"]["quotas"]["ok"] is False
    assert document["checks"]["policy"]["ok"] is True
    assert "hunter2-secret" not in response.text


async def test_reachable_redis_quota_store_is_ready(protected: Factory, redis_url: str) -> None:
    async with protected(quota={"storage": redis_url}) as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["quotas"]["ok"] is True


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [("HEAD", 200, b""), ("POST", 405, None), ("DELETE", 405, None)],
    ids=["head-no-body", "post", "delete"],
)
async def test_operations_endpoints_only_answer_get_and_head(
    protected: Factory, method: str, status: int, body: bytes | None
) -> None:
    async with protected() as p:
        response = await p.client.request(method, "/healthz")
    assert response.status_code == status
    if body is not None:
        assert response.content == body
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD"


async def test_paths_are_configurable_and_empty_disables(protected: Factory) -> None:
    observability = {"liveness_path": "/live", "readiness_path": ""}
    async with protected(observability=observability) as p:
        live = await p.client.get("/live")
        ready = await p.client.get("/readyz")
        app_health = await p.client.get("/healthz")
    assert live.json()["status"] == "ok"
    assert ready.status_code == 401  # no longer an endpoint: an ordinary, protected path
    assert app_health.json() == {"status": "ok"}  # the demo app's own, now unshadowed


def test_endpoint_paths_must_be_absolute() -> None:
    from gatekeeper.errors import ConfigurationError
    from gatekeeper.settings import Settings

    with pytest.raises(ConfigurationError, match="starts with '/'"):
        Settings.load(observability={"readiness_path": "readyz"})


async def test_protected_paths_still_need_a_key(protected: Factory) -> None:
    async with protected() as p:
        assert (await p.client.get("/v1/models")).status_code == 401
        assert (await p.client.get("/v1/models", headers=bearer("gk-demo-pro"))).status_code == 200


# --- the Health protocol: what readiness makes of a part's answer -----------------------------


class Part:
    """A part answering ``answer`` from ``health()`` after ``delay`` seconds (or raising it)."""

    def __init__(self, answer: PartHealth | Exception, delay: float = 0.0) -> None:
        self.answer, self.delay = answer, delay

    async def health(self) -> PartHealth:
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "degraded_ok", "document"),
    [
        (PartHealth(ok=True), False, {"ok": True}),
        (PartHealth(ok=False, detail={"error": "x"}), True, {"ok": False, "error": "x"}),
        (
            PartHealth(ok=True, degraded=True, detail={"state": "degraded"}),
            False,
            {"ok": False, "state": "degraded", "degraded": True},
        ),
        (
            PartHealth(ok=True, degraded=True, detail={"state": "degraded"}),
            True,
            {"ok": True, "state": "degraded", "degraded": True},
        ),
        (PartHealth(ok=False, detail={"ok": True}), False, {"ok": False}),
        (
            PartHealth(ok=True, detail={"n": 1, "at": (1, 2.5), "url": "redis://:pw-123@h:6379"}),
            False,
            {"ok": True, "n": 1, "at": [1, 2.5], "url": "redis://:[redacted]@h:6379"},
        ),
    ],
    ids=["ok", "not-ok", "degraded", "degraded-ok", "detail-cannot-say-ok", "plain-redacted"],
)
async def test_a_part_is_shown_as_it_reports_itself(
    answer: PartHealth, degraded_ok: bool, document: dict[str, Any]
) -> None:
    assert await check_part(Part(answer), 0.2, degraded_ok) == document


async def test_a_part_that_raises_or_is_too_slow_is_not_ready() -> None:
    raised = await check_part(Part(ConnectionError("redis://:pw-123@h:6379 refused")), 0.2)
    slow = await check_part(Part(PartHealth(ok=True), delay=5), 0.05)
    assert raised == {"ok": False, "error": "ConnectionError: redis://:[redacted]@h:6379 refused"}
    assert slow == {"ok": False, "error": "no answer within 0.05 s"}


async def test_readiness_is_ready_degraded_or_not_from_the_parts_alone() -> None:
    up, down = Part(PartHealth(ok=True)), Part(PartHealth(ok=False))
    degraded = Part(PartHealth(ok=True, degraded=True))
    assert (await readiness({"a": up}, 0.2))[1]["status"] == "ready"
    assert (await readiness({"a": up, "b": degraded}, 0.2, degraded_ok=True))[1]["status"] == (
        "degraded"
    )
    ready, document = await readiness({"a": up, "b": degraded}, 0.2)
    assert (ready, document["status"]) == (False, "not_ready")
    ready, document = await readiness({"b": down, "a": up}, 0.2, degraded_ok=True)
    assert (ready, list(document["checks"])) == (False, ["b", "a"])


async def test_every_part_readiness_asks_implements_the_protocol(protected: Factory) -> None:
    async with protected() as p:
        checks = p.gk.observability.parts.readiness_checks()
        assert list(checks) == ["policy", "subjects", "quotas", "decision_log", "geoip"]
        assert all(isinstance(part, Health) for part in checks.values())


async def test_the_decision_log_reports_its_counts(tmp_path: Path) -> None:
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"))
    assert await log.health() == PartHealth(ok=True, detail={"written": 0, "dropped": 0})
    log.record({"decision_id": "d1"})
    await log.flush()
    assert (await log.health()).detail["written"] >= 1
    await log.aclose()  # a writer ended at shutdown is not one that stopped on its own
    assert (await log.health()).ok


async def test_a_redis_subject_store_that_does_not_answer_is_degraded(redis_url: str) -> None:
    store = RedisSubjectStore(redis_url)
    dead = RedisSubjectStore(f"redis://:pw-123@127.0.0.1:{free_port()}/0")
    try:
        assert await store.health() == PartHealth(ok=True, detail={"status": "ok"})
        health = await dead.health()
        assert health.ok and health.degraded and health.detail["status"] == "degraded"
        document = check_document(health, degraded_ok=True)
        assert document["ok"] and "pw-123" not in str(document)
    finally:
        await store.aclose()
        await dead.aclose()


async def test_by_default_a_degraded_quota_store_stays_ready(protected: Factory) -> None:
    """Every replica shares the store: failing them all would turn a quota outage into an
    outage of the API, while the quotas' on_store_error modes keep serving."""
    async with protected(quota={"storage": f"redis://127.0.0.1:{free_port()}/0"}) as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["quotas"]["state"] == "degraded"
