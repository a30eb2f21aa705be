"""summary, truncate and redact on hand-written streams of each dialect: where the rewritten
reasoning goes, what stays valid, what continuity keeps."""

from __future__ import annotations

from typing import Any

import orjson

from gatekeeper.dialects import AnthropicMessages, OpenAIChat, OpenAIResponses
from tests.dialects.streams import now, run, shaper

REASONING = "First I compare the tenths. Then I check the hundredths. So 9.8 is larger."

# -- chat completions ---------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [choice], **extra}


def _chat_stream(usage: bool = True) -> list[Any]:
    words = REASONING.split(" ")
    pieces = [" ".join(words[i : i + 3]) + " " for i in range(0, len(words), 3)]
    return [
        _chunk({"role": "assistant", "content": None, "reasoning_content": ""}, usage=None),
        *(_chunk({"content": None, "reasoning_content": p}, usage=None) for p in pieces),
        _chunk({"content": "9.8"}, usage=None),
        _chunk({"content": " is larger."}, usage=None),
        _chunk({}, "stop", usage=None),
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {
                "completion_tokens": 30,
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
        },
        "[DONE]",
    ][: None if usage else -2]


def _deltas(out: list[Any]) -> list[dict[str, Any]]:
    return [d["choices"][0]["delta"] for d in out if isinstance(d, dict) and d["choices"]]


def test_chat_summary_is_one_chunk_right_before_the_answer() -> None:
    s = shaper(OpenAIChat(), "summary", 12)
    out = run(s, _chat_stream())
    deltas = _deltas(out)
    assert deltas[0] == {"role": "assistant", "content": None}  # the role goes out at once
    assert deltas[1]["reasoning_content"].startswith("[summary] ")
    assert [d.get("content") for d in deltas[2:4]] == ["9.8", " is larger."]
    assert out[-1] == "[DONE]"
    summary = deltas[1]["reasoning_content"].removeprefix("[summary] ")
    usage = out[-2]["usage"]
    assert usage["completion_tokens"] == 30  # billing truth
    assert usage["completion_tokens_details"]["reasoning_tokens"] == s.stats.exposed_tokens
    assert s.stats.exposed_chars == len(summary) and 0 < s.stats.exposed_tokens < 20


def test_chat_summary_of_a_stream_that_ends_early_goes_out_at_the_end() -> None:
    s = shaper(OpenAIChat(), "summary")
    out = run(s, _chat_stream()[:4])  # reasoning only, then the connection ends
    tail = now(s.finish())
    assert len(_deltas(out)) == 1
    assert orjson.loads(tail[0].data)["choices"][0]["delta"]["reasoning_content"].startswith(
        "[summary] First I compare the tenths."
    )


def test_chat_truncate_cuts_inside_a_delta_and_redact_shows_the_marker_once() -> None:
    truncated = "".join(
        d.get("reasoning_content", "")
        for d in _deltas(run(shaper(OpenAIChat(), "truncate", 5), _chat_stream()))
    )
    assert truncated == REASONING[:20] + " [reasoning truncated]"
    redacted = [
        d["reasoning_content"]
        for d in _deltas(run(shaper(OpenAIChat(), "redact"), _chat_stream()))
        if "reasoning_content" in d
    ]
    assert redacted == ["[reasoning redacted]"]


def test_chat_openrouter_details_carry_the_shown_text() -> None:
    upstream = [
        _chunk(
            {
                "role": "assistant",
                "content": "",
                "reasoning": REASONING,
                "reasoning_details": [
                    {"type": "reasoning.text", "text": REASONING, "format": "f", "index": 0}
                ],
            }
        ),
        _chunk({"role": "assistant", "content": "9.8"}),
    ]
    delta = _deltas(run(shaper(OpenAIChat(), "redact"), upstream))[0]
    assert delta["reasoning"] == "[reasoning redacted]"
    assert delta["reasoning_details"] == [
        {"type": "reasoning.text", "text": "[reasoning redacted]", "format": "f", "index": 0}
    ]


def test_chat_keeps_the_reasoning_of_a_tool_call_under_its_id() -> None:
    upstream = [
        *_chat_stream(usage=False)[:-3],
        _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function"}]}),
        _chunk({}, "tool_calls"),
        "[DONE]",
    ]
    s = shaper(OpenAIChat(), "drop", keep=True)
    run(s, upstream)
    assert [(k.keys, k.value) for k in s.kept] == [
        (("openai_chat:tc:call_1",), {"reasoning_content": REASONING + " "})
    ]


# -- Anthropic messages -------------------------------------------------------------------


def _block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[Any]:
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def _thinking(index: int, text: str, signature: str) -> list[Any]:
    return _block(
        index,
        {"type": "thinking", "thinking": "", "signature": ""},
        [
            {"type": "thinking_delta", "thinking": text[:20]},
            {"type": "thinking_delta", "thinking": text[20:]},
            {"type": "signature_delta", "signature": signature},
        ],
    )


def _messages_stream() -> list[Any]:
    return [
        {"type": "message_start", "message": {"id": "msg_1", "content": [], "usage": {}}},
        *_thinking(0, REASONING, "SIG-ONE"),
        *_block(1, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}, []),
        *_thinking(2, "Now I have the tool result, which settles it.", "SIG-TWO"),
        *_block(3, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "9.8"}]),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 40, "output_tokens_details": {"thinking_tokens": 30}},
        },
        {"type": "message_stop"},
    ]


def _thinking_blocks(out: list[Any]) -> list[tuple[int, str, str]]:
    """(index, text, signature) of each thinking block, as the SDK would assemble it."""
    found: dict[int, list[str]] = {}
    for doc in out:
        if doc["type"] == "content_block_start" and doc["content_block"]["type"] == "thinking":
            found[doc["index"]] = [doc["content_block"]["thinking"], ""]
        elif doc["type"] == "content_block_delta" and doc["index"] in found:
            found[doc["index"]][0] += doc["delta"].get("thinking", "")
            found[doc["index"]][1] += doc["delta"].get("signature", "")
    return [(i, t, sig) for i, (t, sig) in found.items()]


def test_anthropic_truncate_budget_runs_across_interleaved_thinking_blocks() -> None:
    s = shaper(AnthropicMessages(), "truncate", 5)
    out = run(s, _messages_stream(), named=True)
    blocks = _thinking_blocks(out)
    assert [(i, t) for i, t, _ in blocks] == [
        (0, REASONING[:20] + " [reasoning truncated]"),
        (2, ""),
    ]
    assert all(sig.startswith("gk1.") for _, _, sig in blocks)
    assert "SIG-" not in orjson.dumps(out).decode()
    starts = [d["index"] for d in out if d["type"] == "content_block_start"]
    assert starts == [0, 1, 2, 3]


def test_anthropic_summary_arrives_just_before_the_block_stops() -> None:
    s = shaper(AnthropicMessages(), "summary", keep=True)
    out = run(s, _messages_stream(), named=True)
    first = [d for d in out if d.get("index") == 0]
    assert [d["type"] for d in first] == [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
    ]
    assert first[1]["delta"]["thinking"].startswith("[summary] ")
    assert first[2]["delta"]["type"] == "signature_delta"
    usage = next(d for d in out if d["type"] == "message_delta")["usage"]
    assert usage["output_tokens_details"]["thinking_tokens"] == s.stats.exposed_tokens
    (kept,) = s.kept
    assert kept.keys[0] == "anthropic_messages:tu:toolu_1"
    assert [b and b["signature"] for b in kept.value["slots"]] == ["SIG-ONE", None, "SIG-TWO", None]


def test_anthropic_redact_keeps_the_shape_with_handles() -> None:
    document = {
        "id": "msg_2",
        "content": [
            {"type": "redacted_thinking", "data": "OPAQUE-DATA"},
            {"type": "thinking", "thinking": REASONING, "signature": "SIG"},
            {"type": "text", "text": "9.8"},
        ],
    }
    shaped = now(shaper(AnthropicMessages(), "redact").shape_json(document))
    redacted, thinking, text = shaped["content"]
    assert redacted["type"] == "redacted_thinking" and redacted["data"].startswith("gk1.")
    assert thinking["thinking"] == "[reasoning redacted]"
    assert thinking["signature"].startswith("gk1.")
    assert text == {"type": "text", "text": "9.8"}
    for mode in ("summary", "truncate"):
        kinds = [
            b["type"]
            for b in now(shaper(AnthropicMessages(), mode).shape_json(document))["content"]
        ]
        assert kinds == ["thinking", "text"]  # opaque redacted blocks have nothing to show


# -- Responses ----------------------------------------------------------------------------


def _responses_stream() -> list[Any]:
    item = {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "ENC-PARTIAL"}
    at = {"item_id": "rs_1", "output_index": 0}
    parts = ["First I compare the tenths. ", "Then I check the hundredths."]
    events: list[Any] = [
        {"type": "response.created", "response": {"id": "r", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
    ]
    for n, text in enumerate(parts):
        events += [
            {
                "type": "response.reasoning_summary_part.added",
                **at,
                "summary_index": n,
                "part": {"type": "summary_text", "text": ""},
            },
            {
                "type": "response.reasoning_summary_text.delta",
                **at,
                "summary_index": n,
                "delta": text,
            },
            {
                "type": "response.reasoning_summary_text.done",
                **at,
                "summary_index": n,
                "text": text,
            },
            {
                "type": "response.reasoning_summary_part.done",
                **at,
                "summary_index": n,
                "part": {"type": "summary_text", "text": text},
            },
        ]
    done_item = {
        **item,
        "summary": [{"type": "summary_text", "text": t} for t in parts],
        "encrypted_content": "ENC-FULL",
    }
    call = {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "f",
        "arguments": "{}",
    }
    events += [
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {"type": "response.output_item.added", "output_index": 1, "item": call},
        {"type": "response.output_item.done", "output_index": 1, "item": call},
        {
            "type": "response.completed",
            "response": {
                "id": "r",
                "output": [done_item, call],
                "usage": {"output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 12}},
            },
        },
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def test_responses_summary_replaces_the_parts_when_the_item_is_done() -> None:
    s = shaper(OpenAIResponses(), "summary", keep=True)
    out = run(s, _responses_stream(), named=True)
    assert [d["sequence_number"] for d in out] == list(range(len(out)))
    kinds = [d["type"] for d in out]
    assert kinds[1:7] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    summary = out[3]["delta"]
    assert summary.startswith("[summary] First I compare the tenths.")
    final = out[-1]["response"]
    assert final["output"][0] == {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}],
    }
    assert "ENC-" not in orjson.dumps(out).decode()
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == s.stats.exposed_tokens
    (kept,) = s.kept
    assert kept.keys == (
        "openai_responses:rs:rs_1",
        "openai_responses:follow:fc_1",
        "openai_responses:call:call_1",
    )
    assert kept.value["encrypted_content"] == "ENC-FULL"


def test_responses_truncate_leaves_out_the_parts_after_the_cut() -> None:
    out = run(shaper(OpenAIResponses(), "truncate", 4), _responses_stream(), named=True)
    parts = [d for d in out if d["type"].startswith("response.reasoning_summary")]
    assert {d["summary_index"] for d in parts} == {0}
    done = next(d for d in out if d["type"] == "response.output_item.done")
    assert done["item"]["summary"] == [
        {"type": "summary_text", "text": "First I compare  [reasoning truncated]"}
    ]
    assert out[-1]["response"]["output"][0] == done["item"]
    assert [d["sequence_number"] for d in out] == list(range(len(out)))
