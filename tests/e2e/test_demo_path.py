"""The protected request path end to end: the demo over HTTP, driven by the official SDKs."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import anthropic_client, openai_client
from tests.servers import DemoServer

QUESTION = "Is 9.11 larger than 9.8?"


pytestmark = pytest.mark.e2e


def chat(client: openai.OpenAI, stream: bool = False):  # type: ignore[no-untyped-def]
    return client.chat.completions.create(
        model="demo-reasoner",
        messages=[{"role": "user", "content": QUESTION}],
        stream=stream,
    )


# --- allowed calls, reasoning exposure ------------------------------------------------------


def test_enterprise_chat_gets_reasoning_and_answer(demo: DemoServer) -> None:
    result = chat(openai_client(demo, "gk-demo-enterprise"))
    message = result.choices[0].message
    assert message.content
    assert getattr(message, "reasoning_content", None)
    assert result.usage is not None
    assert result.usage.completion_tokens_details is not None
    assert result.usage.completion_tokens_details.reasoning_tokens


def test_enterprise_chat_stream_carries_reasoning_deltas(demo: DemoServer) -> None:
    chunks = list(chat(openai_client(demo, "gk-demo-enterprise"), stream=True))
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning and answer


def test_enterprise_anthropic_stream_has_thinking(demo: DemoServer) -> None:
    client = anthropic_client(demo, "gk-demo-enterprise")
    with client.messages.stream(
        model="demo-reasoner",
        max_tokens=512,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        final = stream.get_final_message()
    kinds = [block.type for block in final.content]
    assert kinds == ["thinking", "text"]
    assert final.content[0].signature  # type: ignore[union-attr]


def test_enterprise_responses_have_reasoning_item(demo: DemoServer) -> None:
    client = openai_client(demo, "gk-demo-enterprise")
    response = client.responses.create(model="demo-reasoner", input=QUESTION)
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_free_chat_has_no_reasoning(demo: DemoServer, stream: bool) -> None:
    client = openai_client(demo, "gk-demo-free")
    if stream:
        chunks = list(chat(client, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        for chunk in chunks:
            dumped = chunk.model_dump_json()
            assert "reasoning_content" not in dumped or '"reasoning_content":null' in dumped
            for choice in chunk.choices:
                assert not getattr(choice.delta, "reasoning_content", None)
    else:
        message = chat(client).choices[0].message
        assert message.content
        assert getattr(message, "reasoning_content", None) is None


def test_free_anthropic_stream_and_json_have_no_thinking(demo: DemoServer) -> None:
    client = anthropic_client(demo, "gk-demo-free")
    params = {
        "model": "demo-reasoner",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    with client.messages.stream(**params) as stream:  # type: ignore[arg-type]
        events = list(stream)
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text"]
    block_types = {e.content_block.type for e in events if e.type == "content_block_start"}
    delta_types = {e.delta.type for e in events if e.type == "content_block_delta"}
    assert block_types == {"text"}
    assert "thinking_delta" not in delta_types and "signature_delta" not in delta_types
    message = client.messages.create(**params)  # type: ignore[arg-type]
    assert [b.type for b in message.content] == ["text"]


def test_free_responses_stream_and_json_have_no_reasoning(demo: DemoServer) -> None:
    client = openai_client(demo, "gk-demo-free")
    with client.responses.stream(model="demo-reasoner", input=QUESTION) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["message"]
    assert all("reasoning_summary" not in e.type for e in events)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    response = client.responses.create(model="demo-reasoner", input=QUESTION)
    assert [item.type for item in response.output] == ["message"]


# --- refusals ---------------------------------------------------------------------------------


def test_restricted_jurisdiction_is_451(demo: DemoServer) -> None:
    client = openai_client(demo, "gk-demo-enterprise", **{"X-Forwarded-For": "198.51.100.7"})
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client)
    assert caught.value.status_code == 451
    assert caught.value.code == "jurisdiction_restricted"


def test_restricted_jurisdiction_is_451_for_anthropic_clients(demo: DemoServer) -> None:
    client = anthropic_client(demo, "gk-demo-pro", **{"X-Forwarded-For": "198.51.100.9"})
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="demo-reasoner", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 451
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert "jurisdiction_restricted" in json.dumps(caught.value.body)


def test_unverified_subject_is_403_naming_the_level(demo: DemoServer) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(openai_client(demo, "gk-demo-unverified"))
    assert caught.value.code == "kyc_insufficient"
    assert "email" in caught.value.message
    assert caught.value.response.headers["x-gatekeeper-required-kyc"] == "email"


def test_unverified_subject_is_403_for_anthropic_clients(demo: DemoServer) -> None:
    client = anthropic_client(demo, "gk-demo-unverified")
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(
            model="demo-reasoner", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.type == "permission_error"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "authorization", ["Bearer gk-not-a-key", "Basic Z2stZGVtby1mcmVlOg=="], ids=["unknown", "basic"]
)
def test_bad_key_is_401(demo: DemoServer, authorization: str) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(openai_client(demo, "x", Authorization=authorization))
    assert caught.value.code in {"invalid_api_key", "missing_api_key"}


def test_missing_key_is_401_for_anthropic_clients(demo: DemoServer) -> None:
    with demo.client() as http:
        response = http.post("/v1/messages", json={"max_tokens": 5, "messages": []})
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"


def test_unknown_location_is_403_below_government_id(demo: DemoServer) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(openai_client(demo, "gk-demo-free", **{"X-Forwarded-For": "100.64.1.2"}))
    assert caught.value.code == "location_unknown"
    allowed = chat(openai_client(demo, "gk-demo-pro", **{"X-Forwarded-For": "100.64.1.2"}))
    assert allowed.choices[0].message.content


def test_forwarding_header_ignored_from_untrusted_peer(demo: DemoServer) -> None:
    """127.0.0.2 is not a trusted proxy: its X-Forwarded-For (a KP address) is not believed."""
    untrusted = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    client = openai.OpenAI(
        base_url=demo.url + "/v1",
        api_key="gk-demo-enterprise",
        max_retries=0,
        http_client=untrusted,
        default_headers={"X-Forwarded-For": "198.51.100.7"},
    )
    raw = client.chat.completions.with_raw_response.create(
        model="demo-reasoner", messages=[{"role": "user", "content": QUESTION}]
    )
    assert raw.status_code == 200
    assert raw.parse().choices[0].message.content
    logged = _event_for(demo, raw.headers["x-gatekeeper-decision-id"])
    assert logged is not None
    assert logged["input"]["network"]["client_ip"] == "127.0.0.2"
    assert logged["input"]["network"]["country"] == "US"
    assert logged["input"]["network"]["forwarded"] is False
    # The same header from the trusted proxy (127.0.0.1) is believed: KP, refused.
    trusted = openai_client(demo, "gk-demo-enterprise", **{"X-Forwarded-For": "198.51.100.7"})
    with pytest.raises(openai.APIStatusError) as caught:
        chat(trusted)
    assert caught.value.status_code == 451


def test_quota_exhaustion_is_429_with_retry_after(fresh_demo: DemoServer) -> None:
    client = openai_client(fresh_demo, "gk-demo-free")
    with fresh_demo.client() as http:
        statuses = []
        for _ in range(10):
            r = http.post(
                "/v1/chat/completions",
                json={"model": "demo-reasoner", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": "Bearer gk-demo-free"},
            )
            statuses.append(r.status_code)
            assert r.headers["ratelimit-policy"] == '"requests";q=10;w=60'
    assert statuses == [200] * 10
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client)
    headers = caught.value.response.headers
    assert caught.value.code == "quota_exceeded"
    assert int(headers["retry-after"]) >= 1
    assert headers["ratelimit"].startswith('"requests";r=0')
    # Another subject's bucket is untouched.
    assert chat(openai_client(fresh_demo, "gk-demo-pro")).choices[0].message.content


def test_quota_exhaustion_is_429_for_anthropic_clients(fresh_demo: DemoServer) -> None:
    client = anthropic_client(fresh_demo, "gk-demo-free")
    params = {
        "model": "demo-reasoner",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "x"}],
    }
    for _ in range(10):
        client.messages.create(**params)  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**params)  # type: ignore[arg-type]
    assert int(caught.value.response.headers["retry-after"]) >= 1


# --- bad input ----------------------------------------------------------------------------------


def test_malformed_json_is_400_in_the_dialect_format(demo: DemoServer) -> None:
    with demo.client() as http:
        r = http.post(
            "/v1/messages",
            content=b"{not json",
            headers={"x-api-key": "gk-demo-pro", "content-type": "application/json"},
        )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert _event_for(demo, r.headers["x-gatekeeper-decision-id"]) is not None


def test_oversized_body_is_413(demo: DemoServer) -> None:
    with demo.client() as http:
        r = http.post(
            "/v1/chat/completions",
            content=b'{"messages": "' + b"x" * (2 * 1024 * 1024) + b'"}',
            headers={"authorization": "Bearer gk-demo-pro", "content-type": "application/json"},
        )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


# --- the decision log -----------------------------------------------------------------------------


def test_every_response_has_exactly_one_logged_decision(fresh_demo: DemoServer) -> None:
    requests = [
        ("gk-demo-enterprise", {}),
        ("gk-demo-unverified", {}),
        ("gk-nope", {}),
        ("gk-demo-pro", {"x-forwarded-for": "198.51.100.1"}),
        ("gk-demo-free", {}),
    ]
    ids = []
    with fresh_demo.client() as http:
        for key, extra in requests:
            r = http.post(
                "/v1/chat/completions",
                json={"model": "demo-reasoner", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {key}", **extra},
            )
            ids.append((r.headers["x-gatekeeper-decision-id"], r.status_code))
    events = fresh_demo.events(count=len(ids))
    by_id: dict[str, list[dict]] = {}
    for event in events:
        by_id.setdefault(event["decision_id"], []).append(event)
    for decision_id, status in ids:
        assert len(by_id[decision_id]) == 1
        assert by_id[decision_id][0]["gatekeeper"]["enforcement"]["status"] == status
    assert [s for _, s in ids] == [200, 403, 401, 451, 200]
    raw = fresh_demo.log_path.read_bytes()
    for key in ("gk-demo-enterprise", "gk-demo-unverified", "gk-nope", "gk-demo-free"):
        assert key.encode() not in raw


def _event_for(server: DemoServer, decision_id: str | None) -> dict | None:
    if decision_id is None:
        return None
    for _ in range(50):
        for event in server.events():
            if event.get("decision_id") == decision_id:
                return event
        time.sleep(0.05)
    return None
