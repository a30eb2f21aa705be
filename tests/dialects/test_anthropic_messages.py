"""The Messages shaper on hand-written events: the cases the recordings do not cover."""

from __future__ import annotations

from typing import Any

import orjson

from gatekeeper.dialects import AnthropicMessages
from tests.dialects.streams import event, now, run, shaper


def test_anthropic_json_keeps_only_known_safe_blocks() -> None:
    document = {
        "content": [
            {"type": "thinking", "thinking": "abcdefgh", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "future_block", "text": "?"},
            {"type": "text", "text": "answer"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "t", "content": []},
            {"type": "memory_tool_result", "tool_use_id": "t", "content": []},
        ],
        "usage": {"output_tokens": 50, "output_tokens_details": {"thinking_tokens": 30}},
    }
    s = shaper(AnthropicMessages())
    shaped = now(s.shape_json(document))
    assert [b["type"] for b in shaped["content"]] == [
        "text",
        "tool_use",
        "web_search_tool_result",
        "memory_tool_result",
    ]
    assert (s.stats.removed_items, s.stats.seen_chars, s.stats.seen_tokens) == (3, 8, 30)


def _block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def test_anthropic_stream_renumbers_after_removed_blocks_and_merges_usage() -> None:
    upstream = [
        {
            "type": "message_start",
            "message": {
                "content": [{"type": "thinking", "thinking": "pre"}],
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        },
        *_block(
            0,
            {"type": "text", "text": ""},
            [{"type": "text_delta", "text": "a"}, {"type": "signature_delta", "signature": "odd"}],
        ),
        *_block(
            1,
            {"type": "thinking", "thinking": ""},
            [
                {"type": "thinking_delta", "thinking": "secret"},
                {"type": "signature_delta", "signature": "s"},
            ],
        ),
        {"type": "ping"},
        *_block(2, {"type": "future_block"}, [{"type": "future_delta", "x": 1}]),
        *_block(
            3,
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            [{"type": "input_json_delta", "partial_json": "{}"}],
        ),
        {"type": "future_event"},
        {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 20},
        },
        {"type": "message_stop"},
    ]
    s = shaper(AnthropicMessages())
    out = run(s, upstream, named=True)
    assert out[0]["message"]["content"] == []
    blocks = [(d["type"], d["index"]) for d in out if "index" in d]
    assert blocks == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
    ]
    assert [d["content_block"]["type"] for d in out if d["type"] == "content_block_start"] == [
        "text",
        "tool_use",
    ]
    assert "secret" not in orjson.dumps(out).decode() and "odd" not in orjson.dumps(out).decode()
    assert [d["type"] for d in out if "index" not in d] == [
        "message_start",
        "ping",
        "error",
        "message_delta",
        "message_stop",
    ]
    assert s.stats.usage == {"input_tokens": 5, "output_tokens": 20}
    assert (s.stats.removed_items, s.stats.seen_chars) == (3, 9)  # thinking in message_start too
    assert s.stats.removed_unknown == 2  # the odd signature delta and the unknown event


def test_anthropic_full_mode_changes_nothing() -> None:
    s = shaper(AnthropicMessages(), "full")
    for document in _block(
        0, {"type": "thinking", "thinking": ""}, [{"type": "thinking_delta", "thinking": "abcd"}]
    ):
        ev = event(document, document["type"])
        assert now(s.shape_event(ev))[0] is ev
    assert (s.stats.seen_chars, s.stats.exposed_tokens, s.stats.removed_tokens) == (4, 1, 0)


def test_anthropic_abort_frame_is_an_error_event() -> None:
    (frame,) = shaper(AnthropicMessages()).abort_events("upstream_event_too_large", "too big")
    document = orjson.loads(frame.data)
    assert frame.event == "error" == document["type"]
    assert document["error"] == {
        "type": "api_error",
        "message": "too big",
        "code": "upstream_event_too_large",
    }
