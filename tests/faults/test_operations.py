"""Operations faults: a bad configuration under every uvicorn lifespan mode, addresses in what
clients are told, the operations endpoints on the public port, list settings, and a policy
revision rejected for a conformance case. Real processes, real Redis, real sockets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper import Gatekeeper, GatekeeperMiddleware, Settings
from gatekeeper.offline.demo.model_server import create_model_app
from gatekeeper.proxy.app import create_proxy_app
from tests.observability.conftest import release_on_this_thread
from tests.servers import DEMO_CONFIG, ROOT, RedisProcess, demo_server, free_port, wait_for_port

CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}]}
PRO = {"Authorization": "Bearer gk-demo-pro"}
#: What a client-facing message must never contain: addresses, URLs, paths.
LEAKS = re.compile(r"127\.0\.0\.1|://|/tmp/|/nonexistent|redis|:\d{4,5}\b")
MISSING_POLICY = "/nonexistent/gatekeeper-policies"


def assert_no_leak(text: str, *also: str) -> None:
    assert not LEAKS.search(text), text
    for value in also:
        assert value not in text, (value, text)


# --- a configuration error under every lifespan mode ---------------------------------------

APPS = {
    # The documented way: built at import, so any lifespan mode fails before serving.
    "built-at-import": "gatekeeper=Gatekeeper.from_settings(Settings.load(CONFIG))",
    # FastAPI/Starlette build middleware on the first ASGI event.
    "built-lazily": "settings=Settings.load(CONFIG)",
}


def write_app(tmp: Path, kind: str) -> str:
    module = f"gk_app_{kind.replace('-', '_')}"
    (tmp / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from gatekeeper import Gatekeeper, GatekeeperMiddleware, Settings
            from gatekeeper.offline.demo.model_server import create_model_app

            CONFIG = {str(DEMO_CONFIG)!r}
            app = create_model_app()
            app.add_middleware(GatekeeperMiddleware, {APPS[kind]})
            """
        )
    )
    return f"{module}:app"


@contextmanager
def uvicorn(tmp: Path, app: str, lifespan: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {
        "GATEKEEPER_POLICY__PATH": MISSING_POLICY,
        "GATEKEEPER_AUDIT__PATH": str(tmp / "decisions.jsonl"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(tmp), "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--lifespan", lifespan],
        cwd=ROOT,
        env={**_base_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}


@pytest.mark.parametrize("lifespan", ["auto", "on", "off"])
def test_a_configuration_error_stops_uvicorn_before_it_serves(
    tmp_path: Path, lifespan: str
) -> None:
    with uvicorn(tmp_path, write_app(tmp_path, "built-at-import"), lifespan) as (proc, _):
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"no policy directory or bundle at {MISSING_POLICY}" in output
    assert "Uvicorn running on" not in output


@pytest.mark.parametrize("lifespan", ["auto", "on"])
def test_a_lazily_built_middleware_fails_the_lifespan_start_up(
    tmp_path: Path, lifespan: str
) -> None:
    with uvicorn(tmp_path, write_app(tmp_path, "built-lazily"), lifespan) as (proc, _):
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "gatekeeper configuration error" in output and MISSING_POLICY in output
    assert "appears unsupported" not in output and "Uvicorn running on" not in output


def test_a_lazily_built_middleware_without_lifespan_refuses_in_the_api_format(
    tmp_path: Path,
) -> None:
    """Nothing runs before the first request under --lifespan off: the server does start, and
    every request gets a 503 in the API's format (never a plain-text 500); the log says why."""
    with uvicorn(tmp_path, write_app(tmp_path, "built-lazily"), "off") as (proc, port):
        wait_for_port(port, proc=proc)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT)
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "gatekeeper_misconfigured"
    assert_no_leak(response.text)
    assert "gatekeeper configuration error" in output and MISSING_POLICY in output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEKEEPER_NETWORK__TRUSTED_PROXIES", '["127.0.0.1"'),
        ("GATEKEEPER_SERVER__PORT", "eighty"),
        ("GATEKEEPER_POLICY__PATH", MISSING_POLICY),
        ("GATEKEEPER_SERVER__LOOP", "libuv"),
    ],
    ids=["broken-json-list", "not-a-number", "missing-policy", "unknown-loop"],
)
@pytest.mark.parametrize("command", ["demo", "proxy"])
def test_the_cli_prints_a_settings_error_and_exits_2(
    tmp_path: Path, command: str, variable: str, value: str
) -> None:
    args = [sys.executable, "-m", "gatekeeper", command, "--port", str(free_port())]
    if command == "proxy":
        args += ["--upstream", "http://127.0.0.1:9", "--config", str(DEMO_CONFIG)]
    env = {**_base_env(), variable: value, "GATEKEEPER_AUDIT__PATH": str(tmp_path / "d.jsonl")}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and "Traceback" not in done.stderr


def test_list_settings_written_a_b_are_believed(tmp_path: Path) -> None:
    """GATEKEEPER_NETWORK__TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8 (not JSON): the server starts
    and believes X-Forwarded-For from 127.0.0.1 (198.51.100.7 is in a restricted country)."""
    proxies = {"GATEKEEPER_NETWORK__TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"}
    with demo_server(tmp_path, **proxies) as server, server.client() as client:
        forwarded = {**PRO, "X-Forwarded-For": "198.51.100.7"}
        response = client.post("/v1/chat/completions", json=CHAT, headers=forwarded)
    assert response.status_code == 451


# --- no address, URL or path in what clients are told --------------------------------------


def test_a_dead_quota_store_is_a_503_that_names_no_address(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    env = {
        "GATEKEEPER_QUOTA__STORAGE": redis_process.url,
        "GATEKEEPER_SIGNALS__STORAGE": "memory://",
    }
    with demo_server(tmp_path, **env) as server, server.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT, headers=PRO).status_code == 200
        redis_process.kill()
        response = client.post("/v1/chat/completions", json=CHAT, headers=PRO)
        decision_id = response.headers["x-gatekeeper-decision-id"]
        events = {e["decision_id"]: e for e in server.events(2)}
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "quota_store_unavailable"
    assert error["message"].startswith("a quota this request counts against cannot be checked")
    assert_no_leak(response.text, str(redis_process.port))
    # The detail is the operator's: in the decision-log record's error.
    assert str(redis_process.port) in events[decision_id]["error"]["message"]


@asynccontextmanager
async def in_process(app: Any, gk: Gatekeeper) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client
    finally:
        await gk.aclose()
        await release_on_this_thread()


def settings(tmp: Path, **overrides: Any) -> Settings:
    overrides.setdefault("policy", {"check": False})
    return Settings.load(DEMO_CONFIG, audit={"path": str(tmp / "decisions.jsonl")}, **overrides)


async def test_an_unreachable_opa_is_a_503_that_names_no_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    opa = {"engine": "opa", "opa": {"url": f"http://127.0.0.1:{port}", "admin_timeout": 1.0}}
    gk = Gatekeeper.from_settings(settings(tmp_path, policy=opa))
    async with in_process(GatekeeperMiddleware(create_model_app(), gatekeeper=gk), gk) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers=PRO)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "policy_error"
    assert_no_leak(response.text, str(port))
    decision_id = response.headers["x-gatekeeper-decision-id"]
    assert any(decision_id in r.getMessage() for r in caplog.records)


async def test_an_unreachable_upstream_is_a_502_that_names_no_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    s = settings(tmp_path, proxy={"upstream": f"http://127.0.0.1:{port}/base"})
    gk = Gatekeeper.from_settings(s)
    async with in_process(create_proxy_app(s, gatekeeper=gk), gk) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers=PRO)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert_no_leak(response.text, str(port))
    decision_id = response.headers["x-gatekeeper-decision-id"]
    assert any(decision_id in r.getMessage() for r in caplog.records)


# --- the operations endpoints on the public port -------------------------------------------


def test_readiness_detail_and_metrics_are_not_public_by_default(
    tmp_path: Path, redis_url: str
) -> None:
    private = {"GATEKEEPER_OBSERVABILITY__PUBLIC_DETAIL": "false"}
    env = {**private, "GATEKEEPER_QUOTA__STORAGE": redis_url}
    with demo_server(tmp_path, **env) as server, server.client() as client:
        live, ready = client.get("/healthz"), client.get("/readyz")
        metrics = client.get("/metrics")
        with_key = client.get("/metrics", headers=PRO)
    assert live.json() == {"status": "ok"}
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert metrics.status_code == with_key.status_code == 404
    for response in (live, ready, metrics):
        assert_no_leak(response.text)
        assert "policies" not in response.text and "gatekeeper_" not in response.text


# --- a policy revision rejected for a conformance case -------------------------------------


async def test_fixing_only_cases_yaml_activates_the_rejected_revision(tmp_path: Path) -> None:
    repo = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", repo)
    data = repo / "gatekeeper" / "config" / "jurisdictions" / "data.json"
    cases = repo / "conformance" / "cases.yaml"
    original = cases.read_text()
    case = (
        "\n  - id: fr-pro-user\n    rule: jurisdiction.refusals\n"
        "    input: {subject: {tier: pro, kyc_level: government_id, kyc_rank: 4}, "
        "network: {country: FR}}\n    expect: {status: STATUS}\n"
    )
    token = {"token": "ops"}
    s = settings(tmp_path, policy={"path": str(repo), "reload": True}, observability=token)
    gk = Gatekeeper.from_settings(s)
    ops = {"Authorization": "Bearer ops"}
    async with in_process(GatekeeperMiddleware(create_model_app(), gatekeeper=gk), gk) as client:
        data.write_text(data.read_text().replace('"restricted": [', '"restricted": ["FR", ', 1))
        cases.write_text(original + case.replace("STATUS", "200"))
        assert await gk.engine.check() is False  # type: ignore[attr-defined]
        rejected = (await client.get("/readyz", headers=ops)).json()["checks"]["policy"]
        cases.write_text(original + case.replace("STATUS", "451"))
        assert await gk.engine.check() is True  # type: ignore[attr-defined]
        fixed = (await client.get("/readyz", headers=ops)).json()["checks"]["policy"]
    assert "fr-pro-user" in rejected["reload"]["last_error"]
    assert fixed["reload"]["last_error"] is None
    assert "fr-pro-user" in fixed["reload"]["last_rejected"]["error"]
    assert fixed["revision"] != rejected["revision"]
