"""Smoke tests: every example in examples/ starts and protects what it says it protects."""

from __future__ import annotations

import ast
import asyncio
import gc
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.observability.conftest import release_on_this_thread
from tests.servers import OPS_DETAIL, ROOT, START_TIMEOUT, free_port, wait_for_port

pytestmark = pytest.mark.e2e

QUESTION = {"role": "user", "content": "Is 9.11 larger than 9.8?"}


@contextmanager
def script(path: str, tmp: Path, ports: list[int], **env: str) -> Iterator[None]:
    """Run an example's run.sh in its own process group; stop the group (its own jobs) after."""
    output = (tmp / "script.log").open("wb")
    # The interpreter running the tests, never whatever `python3` is on PATH.
    environ = {**os.environ, "PYTHON": sys.executable, **quiet_env(tmp), **env}
    proc = subprocess.Popen(
        ["bash", str(ROOT / path)],
        cwd=ROOT,
        env=environ,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for port in ports:
            try:
                wait_for_port(port, proc=proc)
            except (TimeoutError, RuntimeError) as exc:
                raise RuntimeError((tmp / "script.log").read_text()) from exc
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        output.close()


def quiet_env(tmp: Path) -> dict[str, str]:
    """Settings that keep the examples' state (decision log, GeoIP build) out of the repo."""
    return {
        "PYTHONUNBUFFERED": "1",
        "GATEKEEPER_AUDIT__PATH": str(tmp / "audit" / "decisions.jsonl"),
        "GATEKEEPER_NETWORK__GEOIP_DATABASE": str(tmp / "demo-geo.mmdb"),
        # The pack's Rego tests run in tests/policy, not again at each start.
        "GATEKEEPER_POLICY__CHECK": "false",
        **OPS_DETAIL,
    }


@pytest.fixture
def imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``imported(module)``: an example module imported afresh with ``quiet_env`` settings."""
    for name, value in quiet_env(tmp_path).items():
        monkeypatch.setenv(name, value)

    def load(module: str) -> Any:
        sys.modules.pop(module, None)
        return importlib.import_module(module)

    yield load
    for name in [m for m in sys.modules if m.startswith("examples.")]:
        del sys.modules[name]
    gc.collect()  # regorus engines are freed on the thread that made them


def client_of(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://example.test")


def gatekeeper_in(app: Any) -> Any:
    """The ``Gatekeeper`` of the ``GatekeeperMiddleware`` somewhere in a built app's stack."""
    layer = getattr(app, "middleware_stack", None)
    while layer is not None and not hasattr(layer, "gk"):
        layer = getattr(layer, "app", None)
    assert layer is not None, "no GatekeeperMiddleware in the app"
    return layer.gk


async def test_fastapi_app_shapes_reasoning_per_key(imported: Any) -> None:
    app = imported("examples.fastapi_app.app").app
    async with client_of(app) as client:
        body = {"model": "my-model", "messages": [QUESTION]}
        enterprise = await client.post(
            "/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer gk-demo-enterprise"},
        )
        free = await client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": "Bearer gk-demo-free"}
        )
        stream = await client.post(
            "/v1/chat/completions",
            json={**body, "stream": True},
            headers={"Authorization": "Bearer gk-demo-free"},
        )
        anonymous = await client.post("/v1/chat/completions", json=body)
        health = await client.get("/healthz")
    await gatekeeper_in(app).aclose()
    await release_on_this_thread()
    assert enterprise.json()["choices"][0]["message"]["reasoning_content"]
    assert free.status_code == 200
    assert "reasoning_content" not in free.json()["choices"][0]["message"]
    assert stream.status_code == 200
    assert "larger" in stream.text and "reasoning_content" not in stream.text
    assert anonymous.status_code == 401
    assert health.json()["status"] == "ok"


async def test_starlette_app_shapes_thinking_per_key(imported: Any) -> None:
    module = imported("examples.starlette_app.app")
    body = {"model": "my-model", "max_tokens": 100, "messages": [QUESTION]}
    async with client_of(module.app) as client:
        enterprise = await client.post(
            "/v1/messages", json=body, headers={"x-api-key": "gk-demo-enterprise"}
        )
        free = await client.post("/v1/messages", json=body, headers={"x-api-key": "gk-demo-free"})
    await module.gatekeeper.aclose()
    await release_on_this_thread()
    assert [b["type"] for b in enterprise.json()["content"]] == ["thinking", "text"]
    assert [b["type"] for b in free.json()["content"]] == ["text"]


def test_proxy_example_in_front_of_a_local_model_server(tmp_path: Path) -> None:
    model_port, proxy_port = free_port(), free_port()
    env = {"MODEL_PORT": str(model_port), "PROXY_PORT": str(proxy_port)}
    with script("examples/proxy/run.sh", tmp_path, [model_port, proxy_port], **env):
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="gk-demo-free", max_retries=0
        )
        result = client.chat.completions.create(model="demo-reasoner", messages=[QUESTION])
        ready = httpx.get(f"http://127.0.0.1:{proxy_port}/readyz", timeout=5)
    assert result.choices[0].message.content
    assert not getattr(result.choices[0].message, "reasoning_content", None)
    assert ready.status_code == 200


def test_simulate_live_example_runs_a_scenario_against_two_gateways(tmp_path: Path) -> None:
    """examples/simulate_live/run.py: both gateways answer every request with a policy
    decision, the pack serves no campaign more than the baseline, and both are stopped."""
    report_path = tmp_path / "live.json"
    command = [sys.executable, str(ROOT / "examples/simulate_live/run.py")]
    command += ["simulations/hydras.yaml", "--hours", "0.02", "--speed", "60"]
    done = subprocess.run(
        [*command, "-o", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    assert report["time"]["mode"].startswith("target http://127.0.0.1:")
    requests = report["requests"]
    assert requests > 100
    for entry in [*report["campaigns"].values(), report["benign"]["all"]]:
        for run in ("baseline", "pack"):
            assert set(entry[run]["refused_by_code"]) <= {
                "quota_exceeded",
                "distillation_suspected",
            }
    for entry in report["campaigns"].values():
        assert entry["baseline"]["reasoning_tokens"] > 0
        assert entry["pack"]["reasoning_tokens"] <= entry["baseline"]["reasoning_tokens"]
    # Each gateway logged one decision per request (besides its chain's start event).
    logs = dict(re.findall(r"^(pack|baseline) decision log: (\{.*\})$", done.stdout, re.M))
    for name in ("pack", "baseline"):
        counts = ast.literal_eval(logs[name])
        assert counts.get("allow", 0) + counts.get("deny", 0) == requests
    pids = [int(pid) for pid in re.findall(r"pid (\d+),", done.stderr)]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not list(tmp_path.glob("gatekeeper-live-*"))


def test_multi_replica_example_shares_quotas_through_redis(tmp_path: Path, redis_url: str) -> None:
    port_a, port_b = free_port(), free_port()
    env = {
        "PORT_A": str(port_a),
        "PORT_B": str(port_b),
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/7",  # a database of its own
        "LOG_DIR": str(tmp_path / "logs"),
    }
    statuses: dict[int, list[int]] = {port_a: [], port_b: []}
    with script("examples/multi_replica/run.sh", tmp_path, [port_a, port_b], **env):
        for i in range(12):
            port = (port_a, port_b)[i % 2]
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "demo-reasoner", "messages": [QUESTION]},
                headers={"Authorization": "Bearer gk-demo-free"},
                timeout=10,
            )
            statuses[port].append(response.status_code)
    allowed = sum(s.count(200) for s in statuses.values())
    # The free tier allows 10 a minute (plus what refills during the test): one shared bucket.
    # Two unshared buckets would have allowed all 12.
    assert 10 <= allowed <= 11
    assert 429 in statuses[port_a] + statuses[port_b]


def test_jwt_fastapi_example_takes_tokens_from_its_identity_provider(tmp_path: Path) -> None:
    idp_port, app_port = free_port(), free_port()
    env = {"IDP_PORT": str(idp_port), "APP_PORT": str(app_port)}
    with script("examples/jwt_fastapi/run.sh", tmp_path, [idp_port, app_port], **env):
        idp = f"http://127.0.0.1:{idp_port}"

        def client(tier: str, kyc: str) -> openai.OpenAI:
            query = {"sub": f"user-{tier}", "tier": tier, "kyc_level": kyc}
            token = httpx.get(f"{idp}/token", params=query, timeout=5).text
            base = f"http://127.0.0.1:{app_port}/v1"
            return openai.OpenAI(base_url=base, api_key=token, max_retries=0)

        enterprise = client("enterprise", "business").chat.completions.create(
            model="my-model", messages=[QUESTION]
        )
        free = client("free", "email").chat.completions.create(
            model="my-model", messages=[QUESTION]
        )
        with pytest.raises(openai.AuthenticationError) as refused:
            openai.OpenAI(
                base_url=f"http://127.0.0.1:{app_port}/v1", api_key="eyJ.x.y", max_retries=0
            ).chat.completions.create(model="my-model", messages=[QUESTION])
    assert getattr(enterprise.choices[0].message, "reasoning_content", None)
    assert free.choices[0].message.content
    assert not getattr(free.choices[0].message, "reasoning_content", None)
    assert refused.value.code == "invalid_token"  # shaped like a JWT: never tried as a key


def opa_binary() -> str | None:
    found = shutil.which("opa")
    local = ROOT / ".tools" / "bin" / "opa"
    return found or (str(local) if local.exists() else None)


@pytest.mark.skipif(opa_binary() is None, reason="no opa binary (make test builds one with Go)")
def test_opa_sidecar_example_decides_through_opa(tmp_path: Path) -> None:
    opa_port, port = free_port(), free_port()
    env = {
        "OPA": opa_binary() or "opa",
        "OPA_PORT": str(opa_port),
        "PORT": str(port),
    }
    with script("examples/opa_sidecar/run.sh", tmp_path, [opa_port, port], **env):
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="gk-demo-unverified", max_retries=0
        )
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="demo-reasoner", messages=[QUESTION])
    assert ready["checks"]["policy"]["engine"] == "opa"


MIXED = [  # (key, extra headers, expected statuses): every kind of outcome
    ("gk-demo-enterprise", {}, {200}),
    ("gk-demo-pro", {}, {200, 429}),
    ("gk-demo-free", {}, {200, 429}),
    ("gk-demo-unverified", {}, {403}),
    ("gk-not-a-key", {}, {401}),
    ("gk-demo-enterprise", {"X-Forwarded-For": "198.51.100.7"}, {451}),
]


async def send_mixed(url: str, count: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=32, keepalive_expiry=1.0)  # under uvicorn's 5 s
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            key, headers, expected = MIXED[i % len(MIXED)]
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "demo-reasoner", "messages": [QUESTION]},
                headers={"Authorization": f"Bearer {key}", **headers},
            )
            assert response.status_code in expected, (key, headers, response.text)
            assert response.headers["x-gatekeeper-decision-id"]
            statuses[response.status_code] += 1

        await asyncio.gather(*(one(i) for i in range(count)))
    return statuses


def worker_pids(url: str, workers: int) -> set[int]:
    """Each worker's pid from /readyz (a new connection each time), once all have answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + START_TIMEOUT  # workers start slowly on a loaded machine
    while len(seen) < workers and time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=START_TIMEOUT) as client:
                seen.add(int(client.get(f"{url}/readyz").headers["x-gatekeeper-worker-pid"]))
        except httpx.TransportError:
            time.sleep(0.2)
    return seen


def verified(log: Path) -> str:
    """``gatekeeper audit verify`` on a log of several chains: its report, once it passed."""
    verify = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "audit", "verify", str(log)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return verify.stdout


def metric_total(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_workers_example_four_workers_one_chain_each_metrics_summed(
    tmp_path: Path, redis_url: str
) -> None:
    port, count = free_port(), 2000
    log = tmp_path / "audit" / "decisions.jsonl"
    env = {
        "PORT": str(port),
        "WORKERS": "4",
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/8",  # a database of its own
        "GATEKEEPER_OBSERVABILITY__MULTIPROCESS_DIR": str(tmp_path / "metrics"),
        "GATEKEEPER_OBSERVABILITY__MULTIPROCESS_INTERVAL_SECONDS": "0.2",
    }
    url = f"http://127.0.0.1:{port}"
    with script("examples/workers/run.sh", tmp_path, [port], **env):
        assert len(worker_pids(url, 4)) == 4, (tmp_path / "script.log").read_text()
        statuses = asyncio.run(send_mixed(url, count))
        time.sleep(1.0)  # past the metrics snapshot interval of every worker
        scrapes = [httpx.get(f"{url}/metrics", timeout=10).text for _ in range(4)]
    assert sum(statuses.values()) == count and {401, 403, 451} <= set(statuses)
    for text in scrapes:  # whichever worker answered, the totals are the fleet's
        assert metric_total(text, "gatekeeper_decisions_total{") == count

    chains = sorted(p for p in log.parent.glob("decisions*.jsonl") if ".checkpoints." not in p.name)
    assert [p.name for p in chains] == [
        "decisions.jsonl",
        "decisions.w1.jsonl",
        "decisions.w2.jsonl",
        "decisions.w3.jsonl",
    ]
    ids: Counter[str] = Counter()
    for chain in chains:
        for line in chain.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("gatekeeper", {}).get("kind", "decision") == "decision":
                ids[entry["decision_id"]] += 1
    assert len(ids) == count and set(ids.values()) == {1}  # each decision in exactly one chain
    assert verified(log).count("OK") >= 4


def test_gunicorn_with_uvicorn_workers_one_chain_each_metrics_summed(
    tmp_path: Path, redis_url: str
) -> None:
    """The other way Python APIs run several workers: gunicorn's arbiter, uvicorn's worker."""
    port, count = free_port(), 300
    log = tmp_path / "audit" / "decisions.jsonl"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "GATEKEEPER_CONFIG": str(ROOT / "examples" / "workers" / "gatekeeper.toml"),
        "GATEKEEPER_QUOTA__STORAGE": redis_url.rsplit("/", 1)[0] + "/9",
        "GATEKEEPER_AUDIT__PATH": str(log),
        "GATEKEEPER_NETWORK__GEOIP_DATABASE": str(tmp_path / "demo-geo.mmdb"),
        "GATEKEEPER_OBSERVABILITY__MULTIPROCESS_DIR": str(tmp_path / "metrics"),
        "GATEKEEPER_OBSERVABILITY__MULTIPROCESS_INTERVAL_SECONDS": "0.2",
        "GATEKEEPER_POLICY__CHECK": "false",
        **OPS_DETAIL,  # /metrics on the app's port
    }
    command = [sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker"]
    command += ["-w", "2", "-b", f"127.0.0.1:{port}", "--no-control-socket"]
    command += ["gatekeeper.offline.demo.app:create_demo_app()"]
    output = tmp_path / "gunicorn.log"
    with output.open("wb") as printed:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=printed, stderr=printed)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc=proc)
        assert len(worker_pids(url, 2)) == 2, output.read_text()
        statuses = asyncio.run(send_mixed(url, count))
        time.sleep(1.0)  # past every worker's metrics snapshot interval
        scrapes = [httpx.get(f"{url}/metrics", timeout=10).text for _ in range(4)]
    finally:
        proc.terminate()  # gunicorn's graceful stop: workers close their logs
        proc.wait(60)
    assert sum(statuses.values()) == count
    for text in scrapes:
        assert metric_total(text, "gatekeeper_decisions_total{") == count, output.read_text()
    verified(log)
    chains = [p for p in log.parent.glob("decisions*.jsonl") if ".checkpoints." not in p.name]
    assert len(chains) == 2
