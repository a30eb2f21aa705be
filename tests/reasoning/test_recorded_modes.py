"""What ``summary``, ``truncate`` and ``redact`` show of every recorded response, as the official
SDKs read it: the answer is untouched, the reasoning is what the mode promises and no more, no
opaque payload (signature, encrypted or redacted reasoning) reaches the client, and the usage's
reasoning count is what the client was shown."""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

import orjson
import pytest

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning import ResponseShaper
from tests.reasoning.recorded import RECORDINGS, Recording, ids, parsed, respond
from tests.reasoning.sdk import Final, read_final
from tests.reasoning.test_recorded import reasoning_count, without_reasoning_count

SUMMARY_TOKENS = 30
TRUNCATE_TOKENS = 20
MARKER = " [reasoning truncated]"


@pytest.fixture(params=RECORDINGS, ids=ids(RECORDINGS))
def recording(request: pytest.FixtureRequest) -> Recording:
    return request.param  # type: ignore[no-any-return]


def shaper(recording: Recording, mode: str) -> ResponseShaper:
    limit = {"summary": SUMMARY_TOKENS, "truncate": TRUNCATE_TOKENS}.get(mode)
    return recording.dialect.new_shaper(ReasoningPolicy(mode=mode, max_tokens=limit))  # type: ignore[arg-type]


@functools.cache
def shaped(recording: Recording, mode: str) -> tuple[bytes, ResponseShaper]:
    """The body a client gets (shaped once per recording and mode; the tests only read it)."""
    s = shaper(recording, mode)
    _, sink = asyncio.run(respond([recording.body], shaper=s, content_type=recording.content_type))
    return sink.body, s


@functools.cache
def original_final(recording: Recording) -> Final:
    return read_final(recording, recording.body)


def blocks(recording: Recording, dump: dict[str, Any], parts: str = "") -> list[str]:
    """The reasoning text of each reasoning block of an SDK-assembled response (a Responses
    item's parts joined with ``parts``)."""
    name = recording.dialect.name
    if name == "openai_chat":
        message = dump["choices"][0]["message"]
        text = message.get("reasoning_content") or message.get("reasoning") or ""
        return [text] if text else []
    if name == "openai_responses":
        return [
            parts.join(p["text"] for key in ("summary", "content") for p in item.get(key) or [])
            for item in dump["output"]
            if item["type"] == "reasoning"
        ]
    return [b["thinking"] for b in dump["content"] if b["type"] == "thinking"]


def opaque(recording: Recording) -> list[str]:
    """Signatures, encrypted and redacted payloads of the original response."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                opaque_key = key in ("signature", "encrypted_content", "data")
                if opaque_key and isinstance(item, str) and len(item) >= 16:
                    found.append(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for document in parsed(recording, recording.body):
        walk(document)
    return found


@pytest.mark.parametrize("mode", ["summary", "truncate", "redact"])
def test_the_sdk_reads_every_mode_and_the_answer_is_untouched(
    recording: Recording, mode: str
) -> None:
    original = original_final(recording)
    body, _ = shaped(recording, mode)
    final = read_final(recording, body)
    assert final.text == original.text
    expected = [k for k in original.kinds if mode == "redact" or k != "redacted_thinking"]
    assert final.kinds == expected


@pytest.mark.parametrize("mode", ["summary", "truncate", "redact"])
def test_no_opaque_payload_reaches_the_client(recording: Recording, mode: str) -> None:
    body, _ = shaped(recording, mode)
    assert [p for p in opaque(recording) if p.encode() in body] == []


def test_redact_shows_the_marker_in_place_of_each_block(recording: Recording) -> None:
    original = blocks(recording, original_final(recording).dump)
    body, _ = shaped(recording, "redact")
    assert blocks(recording, read_final(recording, body).dump) == [
        "[reasoning redacted]" for _ in original
    ]
    long_pieces = [p for text in original for p in re.split(r"[.\n]", text) if len(p) > 24]
    assert [p for p in long_pieces if orjson.dumps(p)[1:-1] in body] == []


def test_truncate_shows_the_first_tokens_then_the_marker(recording: Recording) -> None:
    original = "".join(blocks(recording, original_final(recording).dump))
    body, s = shaped(recording, "truncate")
    shown = "".join(blocks(recording, read_final(recording, body).dump))
    budget = TRUNCATE_TOKENS * 4
    if len(original) > budget:
        assert shown == original[:budget] + MARKER
    else:
        assert shown == original
    assert s.stats.exposed_chars == min(len(original), budget)


def test_summary_is_marked_bounded_and_made_of_the_traces_sentences(
    recording: Recording,
) -> None:
    # The summariser reads a Responses item's parts one per line.
    original = blocks(recording, original_final(recording).dump, parts="\n")
    body, s = shaped(recording, "summary")
    summaries = blocks(recording, read_final(recording, body).dump)
    assert len(summaries) == len(original)
    total = 0
    for text, summary in zip(original, summaries, strict=True):
        if not summary:
            continue  # the budget was spent by an earlier block
        assert summary.startswith("[summary] ")
        shown = summary.removeprefix("[summary] ")
        total += len(shown)
        assert made_of_sentences(shown, text)
    assert total <= SUMMARY_TOKENS * 4
    assert (total > 0) == any(original)
    assert s.stats.exposed_chars == total


def made_of_sentences(summary: str, text: str) -> bool:
    """Whether ``summary`` is whole sentences of ``text`` in order (the last may be cut)."""
    sentences = [" ".join(p.split()) for p in re.split(r"(?<=[.!?])\s+|\n+", text)]
    rest = summary
    for sentence in sentences:
        if sentence and rest.startswith(sentence):
            rest = rest[len(sentence) :].lstrip(" ")
    return rest == "" or (
        rest.endswith("…") and any(s.startswith(rest[:-1].rstrip()) for s in sentences)
    )


@pytest.mark.parametrize("mode", ["full", "summary", "truncate", "redact", "drop"])
def test_usage_reasoning_count_is_what_the_client_was_shown(
    recording: Recording, mode: str
) -> None:
    original = original_final(recording).dump.get("usage")
    body, s = shaped(recording, mode)
    usage = read_final(recording, body).dump.get("usage")
    assert without_reasoning_count(usage) == without_reasoning_count(original)
    if reasoning_count(original) is None:
        assert reasoning_count(usage) is None
    elif mode == "full":
        assert reasoning_count(usage) == reasoning_count(original)
    else:
        assert reasoning_count(usage) == s.stats.exposed_tokens
    assert s.stats.usage is not None
    assert reasoning_count(s.stats.usage) == reasoning_count(original)  # billing truth kept
