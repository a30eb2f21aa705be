"""A saturated process sheds load honestly: 503 ``overloaded`` with Retry-After, before any work,
in the dialect's format, logged; the requests it had already taken in keep going."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import anthropic_client, openai_client
from tests.servers import DemoServer, demo_server

pytestmark = pytest.mark.e2e

BODY = b'{"model":"demo-reasoner","messages":[{"role":"user","content":"Is 9.11 > 9.8?"}]}'


@pytest.fixture
def small_demo(tmp_path: Path) -> Iterator[DemoServer]:
    with demo_server(tmp_path, GATEKEEPER_REQUEST__MAX_ADMITTING="2") as server:
        yield server


def stalled_request(server: DemoServer) -> socket.socket:
    """A request whose body stops half-way: it stays in admission (reading the body)."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        "Authorization: Bearer gk-demo-enterprise\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    )
    sock.sendall(head.encode() + BODY[:20])
    return sock


def finish(sock: socket.socket) -> bytes:
    sock.sendall(BODY[20:])
    sock.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    sock.close()
    return answer


def test_past_max_admitting_requests_get_503_overloaded_and_the_admitted_ones_finish(
    small_demo: DemoServer,
) -> None:
    held = [stalled_request(small_demo), stalled_request(small_demo)]
    with httpx.Client(base_url=small_demo.url, timeout=10) as client:
        # Both places are taken once the server has read the two requests' headers.
        for _ in range(200):
            refused = client.post(
                "/v1/chat/completions",
                content=BODY,
                headers={"Authorization": "Bearer gk-demo-enterprise"},
            )
            if refused.status_code == 503:
                break
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        decision_id = refused.headers["x-gatekeeper-decision-id"]

        with pytest.raises(openai.APIStatusError) as chat:
            openai_client(small_demo, "gk-demo-pro").chat.completions.create(
                model="demo-reasoner", messages=[{"role": "user", "content": "hi"}]
            )
        assert chat.value.status_code == 503 and chat.value.code == "overloaded"
        with pytest.raises(anthropic.APIStatusError) as messages:
            anthropic_client(small_demo, "gk-demo-pro").messages.create(
                model="demo-reasoner", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
            )
        assert messages.value.status_code == 503
        assert messages.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]

        # The two requests taken in before are served in full.
        assert all(finish(sock).startswith(b"HTTP/1.1 200") for sock in held)
        # And with room again, new requests are admitted.
        ok = client.post(
            "/v1/chat/completions",
            content=BODY,
            headers={"Authorization": "Bearer gk-demo-enterprise"},
        )
        assert ok.status_code == 200
        metrics = client.get("/metrics").text
    events = {e["decision_id"]: e for e in small_demo.events()}
    shed = events[decision_id]
    assert shed["result"]["reasons"][0]["code"] == "overloaded"
    assert shed["gatekeeper"]["enforcement"]["status"] == 503
    assert 'gatekeeper_runtime_events_total{event="overloaded"} 3.0' in metrics
