"""Requests that misbehave: slow bodies, deep JSON, an app that raises, 500 KB fields, forged
forwarding headers. Each gets a clear answer in the API's own format, with its decision id, and
a complete decision-log record; nothing hangs, nothing leaks, no record balloons."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.faults.apps import SECRET
from tests.servers import DEMO_CONFIG, ROOT, DemoServer, free_port, wait_for_port

pytestmark = pytest.mark.e2e

KEY = {"Authorization": "Bearer gk-demo-enterprise"}
QUESTION = [{"role": "user", "content": "Is 9.11 larger than 9.8?"}]


@contextmanager
def failing_app(tmp: Path, **env: str) -> Iterator[DemoServer]:
    """``tests.faults.apps`` under uvicorn behind gatekeeper (demo configuration)."""
    port = free_port()
    log_path = tmp / "decisions.jsonl"
    environ = {
        **os.environ,
        "GATEKEEPER_CONFIG": str(DEMO_CONFIG),
        "GATEKEEPER_AUDIT__PATH": str(log_path),
        "GATEKEEPER_NETWORK__GEOIP_DATABASE": str(tmp / "demo-geo.mmdb"),
        "GATEKEEPER_POLICY__CHECK": "false",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "tests.faults.apps:create_app"]
    command += ["--port", str(port), "--log-level", "warning", "--no-proxy-headers"]
    with (tmp / "server.log").open("wb") as output:
        proc = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=output, stderr=output)
    try:
        wait_for_port(port, proc=proc)
        yield DemoServer(f"http://127.0.0.1:{port}", log_path, proc)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    tmp = tmp_path_factory.mktemp("faults")
    with failing_app(tmp, GATEKEEPER_REQUEST__BODY_TIMEOUT="1") as server:
        yield server


def event_of(server: DemoServer, decision_id: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for event in server.events():
            if event["decision_id"] == decision_id:
                return event
        time.sleep(0.05)
    raise AssertionError(f"no event for {decision_id}")


def head_and_body(sock: socket.socket) -> tuple[bytes, bytes]:
    sock.settimeout(15)
    answer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def test_a_body_that_stalls_gets_408_and_its_connection_is_closed(app: DemoServer) -> None:
    port = int(app.url.rsplit(":", 1)[1])
    stalled = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer gk-demo-enterprise\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"model": "demo-reas'
        )
        stalled.append(sock)
    answers = [head_and_body(sock) for sock in stalled]  # recv returns b"" once closed
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b'"code":"request_timeout"' in body
    decision_id = answers[0][0].split(b"x-gatekeeper-decision-id: ")[1].split(b"\r\n")[0]
    event = event_of(app, decision_id.decode())
    assert event["gatekeeper"]["enforcement"]["status"] == 408
    assert event["result"]["reasons"][0]["code"] == "request_timeout"


def test_json_nested_600_deep_is_refused_before_the_app(app: DemoServer) -> None:
    deep = '{"model": "demo", "messages": [], "x": ' + "[" * 600 + "]" * 600 + "}"
    with httpx.Client(base_url=app.url, timeout=10) as client:
        response = client.post("/v1/chat/completions", content=deep, headers=KEY)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "deeper than 64" in response.json()["error"]["message"]
    event = event_of(app, response.headers["x-gatekeeper-decision-id"])
    assert event["gatekeeper"]["enforcement"]["status"] == 400


def test_an_app_that_raises_gets_a_500_in_the_api_format_with_a_complete_record(
    app: DemoServer,
) -> None:
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="gk-demo-enterprise", max_retries=0)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="explode", messages=QUESTION)  # type: ignore[arg-type]
    response = raised.value.response
    assert response.status_code == 500 and raised.value.code == "app_error"
    assert SECRET not in response.text and "Traceback" not in response.text
    event = event_of(app, response.headers["x-gatekeeper-decision-id"])
    assert event["gatekeeper"]["enforcement"]["status"] == 500
    assert event["error"] == {"code": "app_error", "message": "AppFailure"}
    assert event["result"]["allow"] is True  # the policy allowed it; the app failed


def test_an_app_that_raises_mid_stream_ends_the_stream_and_is_recorded(app: DemoServer) -> None:
    with (
        httpx.Client(base_url=app.url, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "explode-midstream", "messages": QUESTION, "stream": True},
            headers=KEY,
        ) as response,
    ):
        decision_id = response.headers["x-gatekeeper-decision-id"]
        with pytest.raises(httpx.RemoteProtocolError):
            b"".join(response.iter_raw())
    event = event_of(app, decision_id)
    assert event["gatekeeper"]["enforcement"]["status"] == 200
    assert event["error"]["code"] == "app_error"


def test_a_500_kb_model_name_is_capped_in_the_log(app: DemoServer) -> None:
    model = "m" * 500_000
    with httpx.Client(base_url=app.url, timeout=10) as client:
        response = client.post(
            "/v1/chat/completions", json={"model": model, "messages": QUESTION}, headers=KEY
        )
    decision_id = response.headers["x-gatekeeper-decision-id"]
    event_of(app, decision_id)
    line = next(line for line in app.log_path.read_text().splitlines() if decision_id in line)
    assert len(line) < 20_000, len(line)
    event = event_of(app, decision_id)
    assert "/input/request/model" in event["truncated"]
    assert event["input"]["request"]["model"].endswith("…[truncated: 500000 chars]")


def test_forwarding_headers_are_flagged_in_the_event(tmp_path: Path) -> None:
    # The peer (127.0.0.1) is not a trusted proxy here: its X-Forwarded-For is ignored, flagged.
    untrusted = failing_app(tmp_path, GATEKEEPER_NETWORK__TRUSTED_PROXIES='["10.9.9.9"]')
    with untrusted as server, httpx.Client(base_url=server.url, timeout=10) as client:
        forged = client.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": QUESTION},
            headers={**KEY, "X-Forwarded-For": "192.0.2.1"},
        )
        plain = client.post(
            "/v1/chat/completions", json={"model": "demo", "messages": QUESTION}, headers=KEY
        )
        flagged = event_of(server, forged.headers["x-gatekeeper-decision-id"])
        unflagged = event_of(server, plain.headers["x-gatekeeper-decision-id"])
    assert flagged["gatekeeper"]["request"]["forwarding"] == {
        "spoofed": True,
        "malformed": False,
        "peer": "127.0.0.1",
    }
    assert flagged["input"]["network"]["client_ip"] == "127.0.0.1"  # the header changed nothing
    assert "forwarding" not in unflagged["gatekeeper"]["request"]


def test_a_malformed_hop_from_a_trusted_proxy_is_flagged(app: DemoServer) -> None:
    with httpx.Client(base_url=app.url, timeout=10) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": QUESTION},
            headers={**KEY, "X-Forwarded-For": "not-an-address"},
        )
    event = event_of(app, response.headers["x-gatekeeper-decision-id"])
    assert event["gatekeeper"]["request"]["forwarding"]["malformed"] is True
