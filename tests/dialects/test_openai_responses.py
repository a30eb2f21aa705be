"""The Responses shaper on hand-written events: the cases the recordings do not cover."""

from __future__ import annotations

from typing import Any

import orjson

from gatekeeper.dialects import OpenAIResponses
from tests.dialects.streams import now, run, shaper


def test_responses_json_keeps_only_known_safe_items_and_parts() -> None:
    document = {
        "output": [
            {
                "id": "rs",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "abcd"}],
            },
            {"id": "cp", "type": "compaction", "encrypted_content": "opaque"},
            {"id": "fc", "type": "function_call", "name": "f", "arguments": "{}"},
            {
                "id": "msg",
                "type": "message",
                "content": [
                    {"type": "reasoning_text", "text": "raw thoughts"},
                    {"type": "output_text", "text": "answer", "annotations": []},
                ],
            },
        ],
        "usage": {"output_tokens_details": {"reasoning_tokens": 3}},
    }
    s = shaper(OpenAIResponses())
    shaped = now(s.shape_json(document))
    assert [i["id"] for i in shaped["output"]] == ["fc", "msg"]
    assert shaped["output"][1]["content"] == [
        {"type": "output_text", "text": "answer", "annotations": []}
    ]
    assert (s.stats.removed_items, s.stats.seen_chars, s.stats.seen_tokens) == (2, 4, 3)


def _item_events(
    position: int, item_type: str, item_id: str, texts: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "output_index": position,
            "item": {"id": item_id, "type": item_type, "content": []},
        }
    ]
    for content_index, (part_type, text) in enumerate(texts):
        delta_type = (
            "response.output_text.delta"
            if part_type == "output_text"
            else "response.reasoning_text.delta"
        )
        common = {"item_id": item_id, "output_index": position, "content_index": content_index}
        events += [
            {
                "type": "response.content_part.added",
                **common,
                "part": {"type": part_type, "text": ""},
            },
            {"type": delta_type, **common, "delta": text},
            {
                "type": "response.content_part.done",
                **common,
                "part": {"type": part_type, "text": text},
            },
        ]
    final = {
        "id": item_id,
        "type": item_type,
        "content": [{"type": t, "text": x} for t, x in texts],
    }
    events.append({"type": "response.output_item.done", "output_index": position, "item": final})
    return events


def test_responses_stream_removes_unknown_items_and_reasoning_parts_and_renumbers() -> None:
    snapshot = {"id": "r", "output": []}
    upstream = [
        {"type": "response.created", "response": snapshot},
        *_item_events(0, "message", "m1", [("output_text", "first")]),
        *_item_events(1, "future_item", "f1", [("output_text", "maybe thoughts")]),
        {"type": "keepalive"},
        {"type": "response.future_event", "detail": "unknown"},
        *_item_events(2, "message", "m2", [("reasoning_text", "raw"), ("output_text", "second")]),
        {"type": "error", "code": "x", "message": "y", "param": None},
        {
            "type": "response.completed",
            "response": {
                "id": "r",
                "output": [
                    {
                        "id": "m1",
                        "type": "message",
                        "content": [{"type": "output_text", "text": "first"}],
                    },
                    {"id": "f1", "type": "future_item", "content": []},
                    {
                        "id": "m2",
                        "type": "message",
                        "content": [
                            {"type": "reasoning_text", "text": "raw"},
                            {"type": "output_text", "text": "second"},
                        ],
                    },
                ],
                "usage": {"output_tokens": 9},
            },
        },
    ]
    for number, document in enumerate(upstream, start=5):
        document["sequence_number"] = number
    s = shaper(OpenAIResponses())
    out = run(s, upstream, named=True)
    assert [d["sequence_number"] for d in out] == list(range(5, 5 + len(out)))
    assert not any(
        "f1" in orjson.dumps(d).decode() or "raw" in orjson.dumps(d).decode() for d in out
    )
    assert {d["output_index"] for d in out if "output_index" in d} == {0, 1}
    m2 = [d for d in out if d.get("item_id") == "m2" or d.get("item", {}).get("id") == "m2"]
    assert {d["output_index"] for d in m2} == {1}
    assert {d["content_index"] for d in m2 if "content_index" in d} == {0}
    assert m2[-1]["item"]["content"] == [{"type": "output_text", "text": "second"}]
    assert [i["id"] for i in out[-1]["response"]["output"]] == ["m1", "m2"]
    assert "keepalive" in [d["type"] for d in out] and "error" in [d["type"] for d in out]
    assert (s.stats.removed_items, s.stats.removed_unknown) == (1, 1)
    assert s.stats.usage == {"output_tokens": 9}


def test_responses_stream_without_sequence_numbers_gets_none_added() -> None:
    out = run(
        shaper(OpenAIResponses()),
        _item_events(0, "reasoning", "rs", [])
        + _item_events(1, "message", "m", [("output_text", "x")]),
    )
    assert all("sequence_number" not in d for d in out)
    assert {d["output_index"] for d in out} == {0}


def test_responses_abort_event_continues_the_sequence() -> None:
    s = shaper(OpenAIResponses())
    run(s, [{"type": "response.created", "sequence_number": 0, "response": {"output": []}}])
    (frame,) = s.abort_events("upstream_event_too_large", "too big")
    document = orjson.loads(frame.data)
    assert frame.event == "error"
    assert (document["type"], document["sequence_number"], document["code"]) == (
        "error",
        1,
        "upstream_event_too_large",
    )
    assert document["error"]["code"] == "upstream_event_too_large"
