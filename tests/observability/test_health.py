"""``/healthz`` and ``/readyz``: served by the middleware, unprotected; the detail only with
``observability.token`` (or ``public_detail``, which the ``protected`` fixture turns on) and on
the metrics port."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gatekeeper import __version__
from gatekeeper.observability.health import check_part
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


# --- reading what a part says about itself ---------------------------------------------------


@dataclass
class Report:
    healthy: bool
    detail: str = ""


class Part:
    """Something with a ``health()``, answering ``answer`` (awaited if ``slow`` or async)."""

    def __init__(self, answer: Any, *, is_async: bool = False, delay: float = 0.0) -> None:
        self.answer, self.is_async, self.delay = answer, is_async, delay

    def health(self) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        if not self.is_async:
            return self.answer

        async def later() -> Any:
            await asyncio.sleep(self.delay)
            return self.answer

        return later()


@pytest.mark.parametrize(
    ("part", "ok"),
    [
        (object(), True),
        (Part(None), True),
        (Part(True), True),
        (Part(False), False),
        (Part({"ok": False, "error": "x"}), False),
        (Part({"state": "up"}), True),
        (Part({"state": "down"}), False),
        (Part({"status": "degraded"}), False),
        (Part({"error": "broken"}), False),
        (Part(Report(healthy=False)), False),
        (Part({"state": "up"}, is_async=True), True),
        (Part({"state": "up"}, is_async=True, delay=5), False),
        (Part(ConnectionError("redis://:pw-123@h:6379 refused")), False),
    ],
    ids=[
        "no-probe",
        "none",
        "true",
        "false",
        "ok-false",
        "state-up",
        "state-down",
        "degraded",
        "error-key",
        "dataclass",
        "async",
        "too-slow",
        "raises",
    ],
)
async def test_part_answers_are_read_leniently(part: Any, ok: bool) -> None:
    result = await check_part(part, {}, limit_seconds=0.2)
    assert result["ok"] is ok
    assert "pw-123" not in str(result)


async def test_degraded_can_count_as_ready() -> None:
    result = await check_part(Part({"state": "degraded"}), {}, 0.2, degraded_ok=True)
    assert result["ok"] is True


async def test_by_default_a_degraded_quota_store_stays_ready(protected: Factory) -> None:
    """Every replica shares the store: failing them all would turn a quota outage into an
    outage of the API, while the quotas' on_store_error modes keep serving."""
    async with protected(quota={"storage": f"redis://127.0.0.1:{free_port()}/0"}) as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["quotas"]["state"] == "degraded"
