"""The chat completions shaper on hand-written chunks: the cases the recordings do not cover."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from gatekeeper.dialects import OpenAIChat
from tests.dialects.streams import event, now, run, shaper


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "delta": delta or {},
        "logprobs": None,
        "finish_reason": finish,
    }
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [choice],
        "usage": None,
        **extra,
    }


def test_chat_json_removes_every_reasoning_key_and_unknown_keys() -> None:
    document: dict[str, Any] = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "9.8",
                    "reasoning_content": "tenths",
                    "reasoning": "tenths",
                    "reasoning_details": [{"type": "reasoning.encrypted", "data": "opaque"}],
                    "x_vendor_thoughts": "hmm",
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
            },
            {"index": 1, "message": {"role": "assistant", "content": "no reasoning here"}},
        ],
        "usage": {"completion_tokens_details": {"reasoning_tokens": 7}},
    }
    before = copy.deepcopy(document)
    s = shaper(OpenAIChat())
    shaped = now(s.shape_json(document))
    assert document == before, "the input is never mutated"
    assert shaped["choices"][0]["message"] == {
        "role": "assistant",
        "content": "9.8",
        "tool_calls": before["choices"][0]["message"]["tool_calls"],
    }
    assert shaped["choices"][1] is document["choices"][1]
    assert (s.stats.removed_items, s.stats.seen_tokens, s.stats.usage_reasoning_tokens) == (1, 7, 7)


def test_chat_json_without_reasoning_is_returned_as_is() -> None:
    document = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
    assert now(shaper(OpenAIChat()).shape_json(document)) is document


STREAM_CASES: dict[str, tuple[list[Any], list[Any]]] = {
    "role-chunk-kept-without-reasoning": (
        [chunk({"role": "assistant", "content": None, "reasoning_content": ""})],
        [chunk({"role": "assistant", "content": None})],
    ),
    "reasoning-only-chunks-dropped": (
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning": "step 1"}),
            chunk({"content": None, "reasoning_content": "2"}),
        ],
        [chunk({"role": "assistant", "content": ""})],
    ),
    "repeated-role-does-not-keep-a-reasoning-chunk": (
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"role": "assistant", "content": "", "reasoning": "x"}),
        ],
        [chunk({"role": "assistant", "content": ""})],
    ),
    "content-next-to-reasoning-kept": (
        [chunk({"content": "A", "reasoning": "why"})],
        [chunk({"content": "A"})],
    ),
    "finish-chunk-kept": (
        [chunk({"reasoning": None}, finish="stop")],
        [chunk({}, finish="stop")],
    ),
    "usage-on-a-reasoning-chunk-kept": (
        [{**chunk({"reasoning": "x"}), "usage": {"completion_tokens": 1}}],
        [{**chunk({}), "usage": {"completion_tokens": 1}}],
    ),
    "logprobs-of-reasoning-tokens-removed": (
        [
            {
                **chunk({"role": "assistant", "reasoning": "x"}),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "reasoning": "x"},
                        "logprobs": {"content": [{"token": "x"}]},
                        "finish_reason": None,
                    }
                ],
            }
        ],
        [
            {
                **chunk({"role": "assistant"}),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant"},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        ],
    ),
    "usage-chunk-and-done-pass": (
        [{"id": "c", "choices": [], "usage": {"completion_tokens": 3}}, "[DONE]"],
        [{"id": "c", "choices": [], "usage": {"completion_tokens": 3}}, "[DONE]"],
    ),
    "error-object-passes": (
        [{"error": {"message": "overloaded", "type": "server_error"}}],
        [{"error": {"message": "overloaded", "type": "server_error"}}],
    ),
    "unparseable-data-dropped": (["not json"], []),
    "several-choices-keep-their-indices": (
        [
            {
                "id": "c",
                "choices": [
                    {"index": 0, "delta": {"content": "A"}},
                    {"index": 1, "delta": {"reasoning": "r"}},
                ],
            }
        ],
        [
            {
                "id": "c",
                "choices": [{"index": 0, "delta": {"content": "A"}}, {"index": 1, "delta": {}}],
            }
        ],
    ),
}


@pytest.mark.parametrize(("upstream", "expected"), STREAM_CASES.values(), ids=STREAM_CASES.keys())
def test_chat_stream(upstream: list[Any], expected: list[Any]) -> None:
    assert run(shaper(OpenAIChat()), upstream) == expected


def test_chat_full_mode_returns_the_same_events_and_records_stats() -> None:
    s = shaper(OpenAIChat(), "full")
    ev = event(chunk({"reasoning_content": "12345678"}))
    assert now(s.shape_event(ev)) == [ev] and now(s.shape_event(ev))[0] is ev
    assert (s.stats.seen_chars, s.stats.exposed_chars, s.stats.removed_items) == (16, 16, 0)


def test_chat_abort_frame_is_an_openai_error_object() -> None:
    frames = shaper(OpenAIChat()).abort_events("upstream_event_too_large", "too big")
    assert [f.event for f in frames] == [None]
    assert orjson.loads(frames[0].data)["error"]["code"] == "upstream_event_too_large"


@pytest.mark.parametrize("mode", ["full", "summary", "truncate", "redact", "drop"])
def test_an_answer_without_reasoning_gains_none_in_json_or_stream(mode: str) -> None:
    # A model that did not reason (or a non-reasoning model) must not be shown a redaction
    # marker, a summary or anything else under a reasoning key, whichever way it answered.
    message = {"role": "assistant", "content": "Paris.", "x_vendor_extra": 1}
    document = {
        "id": "c1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    shaped = now(shaper(OpenAIChat(), mode).shape_json(copy.deepcopy(document)))
    shown = shaped["choices"][0]["message"]
    assert not {"reasoning_content", "reasoning", "reasoning_details"} & set(shown)
    assert shown["content"] == "Paris."
    # Unknown keys are still held back wherever reasoning is removed (they may carry some).
    assert ("x_vendor_extra" in shown) == (mode == "full")

    chunks = [
        {"id": "c1", "object": "chat.completion.chunk",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris."}}]},
        {"id": "c1", "object": "chat.completion.chunk",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        "[DONE]",
    ]  # fmt: skip
    streamed = run(shaper(OpenAIChat(), mode), chunks)
    deltas = [c["choices"][0]["delta"] for c in streamed if isinstance(c, dict) and c["choices"]]
    assert all(not {"reasoning_content", "reasoning"} & set(d) for d in deltas)
