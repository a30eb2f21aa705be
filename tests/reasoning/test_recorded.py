"""Every recorded provider response, shaped in every mode: in ``drop`` nothing of the reasoning
reaches the client, the result is a well-formed response of its dialect whatever the mode and
however the body is chunked, and the official SDKs read it. (What ``summary``, ``truncate`` and
``redact`` show is in test_recorded_modes.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reasoning.recorded import (
    DOCUMENTS,
    RECORDINGS,
    STREAMS,
    Recording,
    documents,
    events,
    ids,
    parsed,
    reasoning_strings,
    respond,
    shape,
    strings,
)
from tests.reasoning.sdk import read_final

MODES = ["full", "summary", "truncate", "redact", "drop"]


@pytest.fixture(params=RECORDINGS, ids=ids(RECORDINGS))
def recording(request: pytest.FixtureRequest) -> Recording:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=STREAMS, ids=ids(STREAMS))
def stream(request: pytest.FixtureRequest) -> Recording:
    return request.param  # type: ignore[no-any-return]


def test_drop_removes_every_reasoning_string(recording: Recording) -> None:
    secrets = reasoning_strings(recording)
    assert secrets, "the check can see reasoning"
    assert reasoning_strings(recording, shape(recording, "full")) == secrets

    shaped = shape(recording, "drop")
    assert reasoning_strings(recording, shaped) == []
    shaped_text = "\x00".join(s for d in parsed(recording, shaped) for s in strings(d))
    leaked = [s for s in secrets if s in shaped_text or orjson.dumps(s)[1:-1] in shaped]
    assert leaked == []


_CHAT_REASONING_KEYS = {"reasoning_content", "reasoning", "reasoning_details", "thinking"}
_REASONING_TYPES = {"reasoning", "thinking", "redacted_thinking", "reasoning_text", "summary_text"}


def _reasoning_structure(value: Any, path: str = "") -> list[str]:
    """Paths of anything shaped like reasoning: a reasoning key on a message/delta, or an
    object whose type is a reasoning type, or a reasoning event/delta type."""
    found: list[str] = []
    if isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str) and (
            kind in _REASONING_TYPES
            or "reasoning" in kind
            or kind.startswith(("thinking", "signature"))
        ):
            found.append(f"{path}.type={kind}")
        if path.endswith((".message", ".delta")):
            found += [f"{path}.{k}" for k in value if k in _CHAT_REASONING_KEYS]
        for key, item in value.items():
            found += _reasoning_structure(item, f"{path}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found += _reasoning_structure(item, f"{path}[{position}]")
    return found


def test_drop_leaves_no_reasoning_structure(recording: Recording) -> None:
    shaped = shape(recording, "drop")
    assert [p for d in parsed(recording, shaped) for p in _reasoning_structure(d)] == []


def test_sdk_reads_the_shaped_response_without_reasoning(recording: Recording) -> None:
    original = read_final(recording, recording.body)
    shaped = read_final(recording, shape(recording, "drop"))
    assert shaped.text == original.text
    assert shaped.kinds == [k for k in original.kinds if k not in _REASONING_TYPES]
    assert _reasoning_structure(shaped.dump) == []
    assert not any(s in orjson.dumps(shaped.dump).decode() for s in reasoning_strings(recording))


def without_reasoning_count(usage: Any) -> Any:
    """A usage object without its reasoning breakdown (the one count shaping rewrites)."""
    if not isinstance(usage, dict):
        return usage
    out = dict(usage)
    for outer in ("completion_tokens_details", "output_tokens_details"):
        if isinstance(out.get(outer), dict):
            out[outer] = {
                k: v
                for k, v in out[outer].items()
                if k not in ("reasoning_tokens", "thinking_tokens")
            }
    return out


def reasoning_count(usage: Any) -> int | None:
    for outer in ("completion_tokens_details", "output_tokens_details"):
        details = usage.get(outer) if isinstance(usage, dict) else None
        for inner in ("reasoning_tokens", "thinking_tokens"):
            if isinstance(details, dict) and isinstance(details.get(inner), int):
                return int(details[inner])
    return None


@pytest.mark.parametrize("mode", ["drop", "redact"])
def test_sdk_sees_billing_totals_and_no_reasoning_tokens(recording: Recording, mode: str) -> None:
    original = read_final(recording, recording.body).dump.get("usage")
    shaped = read_final(recording, shape(recording, mode)).dump.get("usage")
    assert without_reasoning_count(shaped) == without_reasoning_count(original)
    assert reasoning_count(shaped) in (None, 0)
    assert (reasoning_count(shaped) is None) == (reasoning_count(original) is None)


def test_full_mode_is_byte_identical(recording: Recording) -> None:
    assert shape(recording, "full") == recording.body


def _final_usage(recording: Recording) -> dict[str, Any] | None:
    usage: dict[str, Any] | None = None
    for doc in parsed(recording, recording.body):
        for candidate in (doc, doc.get("response") or {}, doc.get("message") or {}):
            if isinstance(candidate, dict) and isinstance(candidate.get("usage"), dict):
                if doc.get("type") == "message_delta" and usage is not None:
                    usage = {**usage, **candidate["usage"]}  # cumulative counts
                else:
                    usage = candidate["usage"]
    return usage


_REDACTED_ONLY = {
    "anthropic-messages__pydantic-ai__2.sse",
    "anthropic-messages__pydantic-ai__4.json",
}


@pytest.mark.parametrize("mode", MODES)
def test_stats_record_final_usage_and_reasoning(recording: Recording, mode: str) -> None:
    shaper = recording.shaper(mode)
    asyncio.run(respond([recording.body], shaper=shaper, content_type=recording.content_type))
    stats = shaper.stats
    assert stats.usage == _final_usage(recording)
    assert stats.mode == mode
    assert stats.applied_mode == mode
    assert stats.removed_unknown == 0
    if mode == "drop":
        assert stats.removed_items >= 1
    if mode in ("drop", "redact"):
        assert stats.exposed_tokens == 0
        assert stats.removed_tokens == stats.seen_tokens
    elif mode == "full":
        assert stats.removed_items == 0
        assert stats.exposed_tokens == stats.seen_tokens
    else:
        assert stats.exposed_tokens <= stats.seen_tokens
        assert stats.seen_tokens == stats.exposed_tokens + stats.removed_tokens
    if stats.usage_reasoning_tokens is not None:
        assert stats.seen_tokens == stats.usage_reasoning_tokens
    if recording.name in _REDACTED_ONLY:
        assert stats.seen_chars == 0  # opaque payloads are items, not text
    else:
        assert stats.seen_chars > 0
        assert stats.seen_tokens > 0


# -- well-formed streams ------------------------------------------------------------------


def _check_chat(original: bytes, shaped: bytes) -> None:
    docs = list(documents(shaped))
    assert all(d.get("object") == "chat.completion.chunk" for d in docs)
    assert events(shaped)[-1].data == "[DONE]"
    assert any(c.get("finish_reason") for d in docs for c in d.get("choices", []))
    usage = [without_reasoning_count(d["usage"]) for d in documents(original) if d.get("usage")]
    assert [without_reasoning_count(d["usage"]) for d in docs if d.get("usage")] == usage


def _check_responses(original: bytes, shaped: bytes) -> None:
    frames = events(shaped)
    docs = list(documents(shaped))
    for frame, doc in zip(frames, docs, strict=False):
        assert frame.event in (None, doc["type"])
    with_event_lines = any(e.event for e in events(original))
    assert all(bool(f.event) == with_event_lines for f in frames if f.data != "[DONE]")
    sequence = [d["sequence_number"] for d in docs]
    first = next(documents(original))["sequence_number"]
    assert sequence == list(range(first, first + len(sequence)))
    added = [d for d in docs if d["type"] == "response.output_item.added"]
    assert [d["output_index"] for d in added] == list(range(len(added)))
    kinds = {d["output_index"]: d["item"]["type"] for d in added}
    for doc in docs:
        if "output_index" in doc:
            assert doc["output_index"] in kinds
        if doc["type"] == "response.output_item.done":
            assert doc["item"]["type"] == kinds[doc["output_index"]]
    final = docs[-1]
    assert final["type"] == "response.completed"
    assert [i["type"] for i in final["response"]["output"]] == [kinds[i] for i in sorted(kinds)]


def _check_anthropic(original: bytes, shaped: bytes) -> None:
    frames = events(shaped)
    docs = list(documents(shaped))
    assert all(f.event == d["type"] for f, d in zip(frames, docs, strict=True))
    assert docs[0]["type"] == "message_start"
    assert docs[-1]["type"] == "message_stop"
    started = [d["index"] for d in docs if d["type"] == "content_block_start"]
    assert started == list(range(len(started)))
    open_blocks: set[int] = set()
    for doc in docs:
        if doc["type"] == "content_block_start":
            open_blocks.add(doc["index"])
        elif doc["type"] == "content_block_delta":
            assert doc["index"] in open_blocks
        elif doc["type"] == "content_block_stop":
            open_blocks.remove(doc["index"])
    assert not open_blocks
    pings = sum(1 for e in events(original) if e.event == "ping")
    assert sum(1 for d in docs if d["type"] == "ping") == pings


_CHECKS = {
    "openai_chat": _check_chat,
    "openai_responses": _check_responses,
    "anthropic_messages": _check_anthropic,
}


@pytest.mark.parametrize("mode", MODES)
def test_shaped_stream_is_well_formed(stream: Recording, mode: str) -> None:
    _CHECKS[stream.dialect.name](stream.body, shape(stream, mode))


def test_keep_alive_comments_pass_through(stream: Recording) -> None:
    comments = [line for line in stream.body.splitlines() if line.startswith(b":")]
    shaped_comments = [line for line in shape(stream, "drop").splitlines() if line.startswith(b":")]
    assert shaped_comments == comments


def _stays_raw(recording: Recording, doc: dict[str, Any], before_first_removal: bool) -> bool:
    """Whether shaping must leave this event's bytes alone."""
    if reasoning_count(doc.get("usage")) is not None:
        return False  # its reasoning count shows what the client was shown
    if recording.dialect.name == "openai_chat":
        return _reasoning_structure(doc) == [] and not any(
            k in _CHAT_REASONING_KEYS for c in doc.get("choices", []) for k in c.get("delta", {})
        )
    if recording.dialect.name == "anthropic_messages":
        return "index" not in doc  # later blocks are renumbered
    return before_first_removal  # Responses renumbers every sequence number after a removal


def test_unchanged_events_are_forwarded_byte_for_byte(stream: Recording) -> None:
    shaped = {e.raw for e in events(shape(stream, "drop"))}
    before_first_removal = True
    must_stay: list[bytes] = []
    for event in events(stream.body):
        doc = {} if event.data.startswith("[DONE]") else orjson.loads(event.data)
        if _reasoning_structure(doc):
            before_first_removal = False
        if _stays_raw(stream, doc, before_first_removal):
            must_stay.append(event.raw or b"")
    assert must_stay
    assert [raw for raw in must_stay if raw not in shaped] == []


# -- any chunking -------------------------------------------------------------------------


_WHOLE = {(r.name, mode): shape(r, mode) for r in STREAMS for mode in MODES}
_SECRETS = {r.name: reasoning_strings(r) for r in STREAMS}


def _no_reasoning_in(recording: Recording, body: bytes) -> None:
    """Not one reasoning text or opaque payload of the recording is in ``body``."""
    assert [s for s in _SECRETS[recording.name] if orjson.dumps(s)[1:-1] in body] == []


@given(
    recording=st.sampled_from(STREAMS),
    mode=st.sampled_from(MODES),
    cuts=st.lists(st.floats(min_value=0, max_value=1), max_size=40),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_chunking_gives_the_same_output(
    recording: Recording, mode: str, cuts: list[float]
) -> None:
    body = recording.body
    points = sorted({int(c * len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    shaped = shape(recording, mode, chunks)
    assert shaped == _WHOLE[(recording.name, mode)]
    if mode == "drop":
        _no_reasoning_in(recording, shaped)


@given(
    recording=st.sampled_from(STREAMS),
    mode=st.sampled_from(MODES),
    size=st.integers(min_value=1, max_value=7),
)
@settings(max_examples=30, deadline=None)
def test_tiny_chunks_give_the_same_output(recording: Recording, mode: str, size: int) -> None:
    body = recording.body
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    shaped = shape(recording, mode, chunks)
    assert shaped == _WHOLE[(recording.name, mode)]
    if mode == "drop":
        _no_reasoning_in(recording, shaped)


@pytest.mark.parametrize("recording", DOCUMENTS, ids=ids(DOCUMENTS))
@pytest.mark.parametrize("mode", MODES)
def test_json_in_any_chunks_gives_the_same_output(recording: Recording, mode: str) -> None:
    body = recording.body
    chunks = [body[i : i + 97] for i in range(0, len(body), 97)]
    assert shape(recording, mode, chunks) == shape(recording, mode)
