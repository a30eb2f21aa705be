"""``gatekeeper proxy`` as its own process in front of separately started upstreams, driven by
the official OpenAI and Anthropic SDKs and by plain HTTP."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.proxy.conftest import UPSTREAM_KEY, Launched, Stack

pytestmark = pytest.mark.e2e

QUESTION = "Is 9.11 larger than 9.8?"
DEMO_KEYS = ("gk-demo-free", "gk-demo-pro", "gk-demo-enterprise", "gk-demo-unverified")


def oai(p: Launched, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=p.url + "/v1", api_key=key, max_retries=0, default_headers=headers or None
    )


def ant(p: Launched, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=p.url, api_key=key, max_retries=0)


def chat(client: openai.OpenAI, model: str = "demo-reasoner", stream: bool = False) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], stream=stream
    )


def echoed(client: openai.OpenAI) -> dict[str, Any]:
    """What the echo upstream received for a chat call, as it reports it."""
    content = chat(client, model="echo").choices[0].message.content
    return json.loads(content)


def headers_of(seen: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in seen["headers"]}


def event_for(p: Launched, decision_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        for event in p.server().events():
            if event.get("decision_id") == decision_id:
                return event
        if time.monotonic() > deadline:
            raise AssertionError(f"no decision event {decision_id}")
        time.sleep(0.05)


# --- the SDKs through the proxy, streaming and not ----------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_enterprise_chat_keeps_reasoning_through_the_proxy(stack: Stack, stream: bool) -> None:
    result = chat(oai(stack.to_model, "gk-demo-enterprise"), stream=stream)
    if stream:
        chunks = [c for c in result if c.choices]
        reasoning = "".join(
            getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks
        )
        answer = "".join(c.choices[0].delta.content or "" for c in chunks)
    else:
        reasoning = getattr(result.choices[0].message, "reasoning_content", None)
        answer = result.choices[0].message.content
    assert reasoning and answer


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_free_chat_reasoning_is_dropped_through_the_proxy(stack: Stack, stream: bool) -> None:
    result = chat(oai(stack.to_model, "gk-demo-free"), stream=stream)
    if stream:
        chunks = [c for c in result if c.choices]
        assert "".join(c.choices[0].delta.content or "" for c in chunks)
        assert not any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks)
    else:
        assert result.choices[0].message.content
        assert not getattr(result.choices[0].message, "reasoning_content", None)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("key", "kinds"),
    [("gk-demo-enterprise", ["thinking", "text"]), ("gk-demo-free", ["text"])],
    ids=["enterprise", "free"],
)
def test_anthropic_messages_through_the_proxy(
    stack: Stack, key: str, kinds: list[str], stream: bool
) -> None:
    client = ant(stack.to_model, key)
    params: dict[str, Any] = {
        "model": "demo-reasoner",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params)
    assert [block.type for block in message.content] == kinds


def test_responses_api_through_the_proxy(stack: Stack) -> None:
    response = oai(stack.to_model, "gk-demo-enterprise").responses.create(
        model="demo-reasoner", input=QUESTION
    )
    assert [item.type for item in response.output] == ["reasoning", "message"]


def test_policy_refusal_never_reaches_the_upstream(stack: Stack) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(oai(stack.to_echo, "gk-demo-unverified"), model="echo")
    assert caught.value.code == "kyc_insufficient"
    event = event_for(stack.to_echo, caught.value.response.headers["x-gatekeeper-decision-id"])
    assert "upstream_status" not in event["gatekeeper"]["enforcement"]


def test_invalid_key_is_refused_in_the_dialect_format(stack: Stack) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        ant(stack.to_model, "gk-demo-wrong").messages.create(
            model="demo-reasoner", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )


def test_decision_log_records_the_upstream_status(stack: Stack) -> None:
    raw = oai(stack.to_model, "gk-demo-pro").chat.completions.with_raw_response.create(
        model="demo-reasoner", messages=[{"role": "user", "content": QUESTION}]
    )
    event = event_for(stack.to_model, raw.headers["x-gatekeeper-decision-id"])
    enforcement = event["gatekeeper"]["enforcement"]
    assert (enforcement["status"], enforcement["upstream_status"]) == (200, 200)


# --- upstream failures ----------------------------------------------------------------------


def test_upstream_down_is_a_502_in_openai_format(stack: Stack) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        chat(oai(stack.to_nothing, "gk-demo-pro"))
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"
    event = event_for(stack.to_nothing, caught.value.response.headers["x-gatekeeper-decision-id"])
    enforcement = event["gatekeeper"]["enforcement"]
    assert enforcement["status"] == 502
    assert enforcement["upstream_error"] == "upstream_unreachable"


def test_upstream_down_is_a_502_in_anthropic_format(stack: Stack) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        ant(stack.to_nothing, "gk-demo-pro").messages.create(
            model="demo-reasoner", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    assert "upstream_unreachable" in caught.value.response.text


def test_upstream_timeout_is_a_504_for_openai_clients(stack: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(oai(stack.to_echo_fast, "gk-demo-pro"), model="stall")
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    event = event_for(stack.to_echo_fast, caught.value.response.headers["x-gatekeeper-decision-id"])
    assert event["gatekeeper"]["enforcement"]["upstream_error"] == "upstream_timeout"


def test_upstream_timeout_is_a_504_for_anthropic_clients(stack: Stack) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        ant(stack.to_echo_fast, "gk-demo-pro").messages.create(
            model="stall", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 504
    assert caught.value.body["error"]["type"]  # type: ignore[index]


def test_stream_that_stalls_midway_ends_with_an_error_the_sdk_raises(stack: Stack) -> None:
    client = oai(stack.to_echo_fast, "gk-demo-pro")
    with pytest.raises(openai.APIError):
        for _ in chat(client, model="stall-stream", stream=True):
            pass


# --- what is forwarded ---------------------------------------------------------------------


def test_client_address_is_passed_on_in_x_forwarded_for(stack: Stack) -> None:
    seen = echoed(oai(stack.to_echo, "gk-demo-pro", **{"X-Forwarded-For": "192.0.2.7"}))
    headers = headers_of(seen)
    # The demo trusts 127.0.0.1, so the client's claim is kept and the peer appended.
    assert headers["x-forwarded-for"] == "192.0.2.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == stack.to_echo.url.removeprefix("http://")
    assert headers["via"] == "1.1 gatekeeper"


def test_upstream_key_replaces_the_clients_credentials(stack: Stack) -> None:
    seen = echoed(oai(stack.to_echo, "gk-demo-pro"))
    headers = headers_of(seen)
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "gk-demo-pro" not in json.dumps(seen)
    with httpx.Client(base_url=stack.to_echo.url, timeout=10) as http:
        seen = http.get("/echo/x", headers={"x-api-key": "gk-demo-pro"}).json()
    assert headers_of(seen)["x-api-key"] == UPSTREAM_KEY
    assert "authorization" not in headers_of(seen)


HOP_BY_HOP_REQUEST = {
    "Connection": "x-client-hop",
    "X-Client-Hop": "only-for-the-first-hop",
    "Keep-Alive": "timeout=5",
    "TE": "trailers",
    "Upgrade": "h2c",
    "Proxy-Authorization": "Basic dXNlcjpwYXNz",
    "Proxy-Connection": "keep-alive",
}


def test_hop_by_hop_headers_are_not_forwarded_either_way(stack: Stack) -> None:
    with httpx.Client(base_url=stack.to_echo.url, timeout=10) as http:
        response = http.get(
            "/echo/a/b?x=1&y=%2F",
            headers={
                "Authorization": "Bearer gk-demo-pro",
                "X-End-To-End": "kept",
                **HOP_BY_HOP_REQUEST,
            },
        )
    assert response.status_code == 200
    seen = response.json()
    sent = headers_of(seen)
    for name in HOP_BY_HOP_REQUEST:
        assert name.lower() not in sent, name
    assert sent["x-end-to-end"] == "kept"
    assert sent["host"] == stack.echo.url.removeprefix("http://")  # Host is the upstream's
    assert (seen["raw_path"], seen["query"]) == ("/echo/a/b", "x=1&y=%2F")
    # ...and on the way back: the upstream's Connection-named and hop-by-hop fields are gone.
    assert response.headers["x-end-to-end"] == "kept"
    for name in ("x-hop-secret", "keep-alive", "proxy-authenticate"):
        assert name not in response.headers, name


def test_request_body_is_streamed_upstream(stack: Stack) -> None:
    parts = [bytes([i]) * 65536 for i in range(48)]  # 3 MiB, sent chunked

    def body() -> Iterator[bytes]:
        yield from parts

    with httpx.Client(base_url=stack.to_echo.url, timeout=10) as http:
        response = http.post(
            "/upload", content=body(), headers={"Authorization": "Bearer gk-demo-pro"}
        )
    joined = b"".join(parts)
    assert response.json()["bytes"] == len(joined)
    assert response.json()["sha256"] == hashlib.sha256(joined).hexdigest()


def test_response_is_streamed_back_before_the_upstream_finishes(stack: Stack) -> None:
    with (
        httpx.Client(base_url=stack.to_echo.url, timeout=10) as http,
        http.stream("GET", "/gated", headers={"Authorization": "Bearer gk-demo-pro"}) as response,
    ):
        lines = response.iter_lines()
        # The upstream holds its second part until released: a buffering proxy would
        # deliver nothing here and the read would time out.
        assert next(lines) == "first"
        httpx.post(stack.echo.url + "/release", timeout=5)
        assert next(lines) == "second"


def test_client_disconnect_cancels_the_upstream_request(stack: Stack) -> None:
    timeout = httpx.Timeout(10, read=0.5)
    with (
        httpx.Client(base_url=stack.to_echo.url, timeout=timeout) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get("/stall", headers={"Authorization": "Bearer gk-demo-pro"})
    deadline = time.monotonic() + 10
    while "stall:disconnected" not in httpx.get(stack.echo.url + "/events").json():
        assert time.monotonic() < deadline, "the upstream request was never cancelled"
        time.sleep(0.05)
    events = stack.to_echo.server().events()
    assert any(
        e.get("gatekeeper", {}).get("enforcement", {}).get("upstream_error")
        == "client_disconnected"
        for e in events
    )


# --- operations endpoints on the proxy -----------------------------------------------------


def test_the_banner_names_the_event_loop_each_proxy_serves_on(stack: Stack) -> None:
    """``--loop asyncio`` (``server.loop``) against the default, auto: uvloop, installed with
    gatekeeper. Every SDK test above through ``to_model`` ran on the asyncio loop."""
    assert "  event loop:   asyncio" in stack.to_model.log_text()
    assert "  event loop:   uvloop" in stack.to_echo.log_text()


def test_health_and_metrics_are_answered_by_the_proxy_itself(stack: Stack) -> None:
    with httpx.Client(base_url=stack.to_nothing.url, timeout=10) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["policy"]["revision"]
        http.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer gk-demo-pro"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        metrics = http.get("/metrics").text
    assert 'gatekeeper_errors_total{component="upstream_connect"}' in metrics


# --- last: nothing secret in any proxy's logs ------------------------------------------------


def test_logs_never_contain_api_keys(stack: Stack) -> None:
    for proxy in (stack.to_model, stack.to_echo, stack.to_nothing):
        with httpx.Client(base_url=proxy.url, timeout=10) as http:
            for key in (*DEMO_KEYS, "gk-demo-free-typo"):
                for headers in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key}):
                    http.post(
                        "/v1/chat/completions",
                        headers=headers,
                        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                    )
                http.get(f"/echo/x?api_key={key}", headers={"Authorization": f"Bearer {key}"})
    time.sleep(0.3)  # let the processes flush their log lines
    logs = {p.output.name: p.log_text() for p in stack.all()[2:]}
    assert any("gatekeeper.access" in text for text in logs.values())  # something was logged
    for name, text in logs.items():
        for secret in (*DEMO_KEYS, UPSTREAM_KEY):
            assert secret not in text, f"{secret} appears in {name}"
