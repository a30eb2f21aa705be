"""demo-reasoner over OpenAI responses, driven by the official openai SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseReasoningItem, ResponseStreamEvent

from ._support import parse_sse, words

QUESTION = "How do tides work on Earth?"


def ask(client: openai.OpenAI, **extra: Any) -> Response:
    response = client.responses.create(
        model="demo-reasoner", input=QUESTION, instructions="Be brief.", **extra
    )
    assert isinstance(response, Response)
    return response


def ask_stream(client: openai.OpenAI, **extra: Any) -> list[ResponseStreamEvent]:
    stream = client.responses.create(
        model="demo-reasoner", input=QUESTION, instructions="Be brief.", stream=True, **extra
    )
    return list(stream)


def reasoning_item(response: Response) -> ResponseReasoningItem:
    item = response.output[0]
    assert isinstance(item, ResponseReasoningItem)
    return item


def test_reply_has_reasoning_item_then_message(openai_client: openai.OpenAI) -> None:
    response = ask(openai_client)
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning = reasoning_item(response)
    summary = " ".join(part.text for part in reasoning.summary)
    assert len(reasoning.summary) == 2 and all(p.type == "summary_text" for p in reasoning.summary)
    assert QUESTION in summary and summary.count(". ") >= 3
    assert reasoning.encrypted_content and QUESTION not in reasoning.encrypted_content
    assert response.output_text
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == words(QUESTION) + words("Be brief.")
    assert usage.output_tokens_details.reasoning_tokens == words(summary)
    assert usage.output_tokens == words(summary) + words(response.output_text)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_same_request_same_reply(openai_client: openai.OpenAI) -> None:
    assert ask(openai_client).model_dump() == ask(openai_client).model_dump()


def test_input_items_use_the_last_user_message(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="demo-reasoner",
        input=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
        ],
    )
    assert QUESTION in reasoning_item(response).summary[0].text
    assert response.usage is not None
    assert response.usage.input_tokens == 4 + words(QUESTION)


def test_stream_helper_builds_the_same_response(openai_client: openai.OpenAI) -> None:
    whole = ask(openai_client)
    with openai_client.responses.stream(
        model="demo-reasoner", input=QUESTION, instructions="Be brief."
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.reasoning_summary_text.delta"]
        final = stream.get_final_response()
    # The helper parses output_text parts (adding ``parsed``), so compare what a user reads.
    assert (final.id, final.status, final.usage) == (whole.id, whole.status, whole.usage)
    assert reasoning_item(final) == reasoning_item(whole)
    assert final.output_text == whole.output_text
    assert len(deltas) >= 5
    assert "".join(deltas) == "".join(p.text for p in reasoning_item(whole).summary)


def test_stream_events_follow_the_real_sequence(openai_client: openai.OpenAI) -> None:
    events = ask_stream(openai_client)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events if not e.type.endswith(".delta")]
    summary_part = [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *summary_part,
        *summary_part,
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == ask(openai_client).output_text


def test_stream_event_lines_name_the_data_type(http: httpx.Client) -> None:
    body = {"model": "demo-reasoner", "input": QUESTION, "stream": True}
    response = http.post("/v1/responses", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.content)
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[-1][0] == "response.completed", "OpenAI sends no [DONE] after the terminal event"


def test_effort_none_turns_reasoning_off(openai_client: openai.OpenAI) -> None:
    response = ask(openai_client, reasoning={"effort": "none"})
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.usage.output_tokens == words(response.output_text)


def test_tiny_token_limit_makes_the_response_incomplete(openai_client: openai.OpenAI) -> None:
    response = ask(openai_client, max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 16
    events = ask_stream(openai_client, max_output_tokens=16)
    assert events[-1].type == "response.incomplete"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model": "demo-reasoner"}, "input", id="no-input"),
        pytest.param({"input": QUESTION}, "model", id="no-model"),
    ],
)
def test_invalid_requests_raise_bad_request(
    openai_client: openai.OpenAI, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.post("/responses", body=body, cast_to=Response)
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == param
    assert caught.value.code == "missing_required_parameter"


def test_non_json_body_is_a_400_in_openai_format(http: httpx.Client) -> None:
    response = http.post(
        "/v1/responses", content=b"[1, 2", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
