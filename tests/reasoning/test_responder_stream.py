"""The Responder on event streams: event by event, any encoding, ending cleanly on errors."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import anthropic
import openai
import orjson
import pytest

from gatekeeper.reasoning import Responder
from tests.reasoning.recorded import (
    ANTHROPIC_STREAM,
    CHAT_STREAM,
    RESPONSES_STREAM,
    Collector,
    Recording,
    chunked,
    events,
    respond,
    shape_async,
)
from tests.reasoning.sdk import anthropic_client, openai_client


async def test_sse_drops_content_length_and_streams_each_event_when_complete() -> None:
    sink = Collector()
    responder = Responder(sink, shaper=ANTHROPIC_STREAM.shaper(), extra_headers=[])
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"content-length", b"16611")],
        }
    )
    assert sink.header(b"content-length") is None  # headers are not held back
    first_event_end = ANTHROPIC_STREAM.body.index(b"\n\n") + 2
    await responder(
        {
            "type": "http.response.body",
            "body": ANTHROPIC_STREAM.body[: first_event_end + 10],
            "more_body": True,
        }
    )
    assert sink.messages[-1]["body"] == ANTHROPIC_STREAM.body[:first_event_end]
    assert sink.messages[-1]["more_body"] is True
    await responder(
        {
            "type": "http.response.body",
            "body": ANTHROPIC_STREAM.body[first_event_end + 10 :],
            "more_body": False,
        }
    )
    assert sink.messages[-1]["more_body"] is False
    assert sink.body == await shape_async(ANTHROPIC_STREAM)
    assert responder.bytes_sent == len(sink.body)


async def test_sse_sends_nothing_for_a_chunk_that_completes_no_event() -> None:
    sink = Collector()
    responder = Responder(sink, shaper=CHAT_STREAM.shaper(), extra_headers=[])
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    await responder({"type": "http.response.body", "body": b"data: {", "more_body": True})
    assert [m["type"] for m in sink.messages] == ["http.response.start"]


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress], ids=["gzip", "deflate"])
@pytest.mark.parametrize("size", [1, 13, 4096])
async def test_compressed_stream_is_decoded_and_shaped(compress: Any, size: int) -> None:
    body = compress(RESPONSES_STREAM.body)
    encoding = b"gzip" if compress is gzip.compress else b"deflate"
    _, sink = await respond(
        chunked(body, size),
        shaper=RESPONSES_STREAM.shaper(),
        content_type=b"text/event-stream",
        headers=[(b"content-encoding", encoding)],
    )
    assert sink.header(b"content-encoding") is None
    assert sink.body == await shape_async(RESPONSES_STREAM)


async def test_stream_with_unsupported_encoding_is_refused_before_it_starts() -> None:
    responder, sink = await respond(
        [b"\x0b\x01\x80garbage"],
        shaper=CHAT_STREAM.shaper(),
        content_type=b"text/event-stream",
        headers=[(b"content-encoding", b"zstd")],
    )
    assert responder.aborted and sink.start["status"] == 502
    assert orjson.loads(sink.body)["error"]["code"] == "unsupported_content_encoding"


def _oversized(recording: Recording) -> list[bytes]:
    """The recording's first two events, then an event over the limit, then the rest."""
    body = recording.body
    split = body.index(b"\n\n", body.index(b"\n\n") + 2) + 2
    return [body[:split] + b"data: " + b"x" * 1000, b"x" * 1000 + b"\n\n", body[split:]]


async def test_oversized_chat_event_ends_the_stream_with_an_error_frame() -> None:
    responder, sink = await respond(
        _oversized(CHAT_STREAM),
        shaper=CHAT_STREAM.shaper(),
        content_type=b"text/event-stream",
        max_event_bytes=1024,
    )
    assert (responder.aborted, responder.abort_reason) == (True, "upstream_event_too_large")
    assert sink.messages[-1]["more_body"] is False
    last = events(sink.body)[-1]
    assert last.event is None
    assert orjson.loads(last.data)["error"]["code"] == "upstream_event_too_large"
    assert (
        len(events(sink.body)) == 2
    )  # role chunk, then the error (the reasoning chunk is dropped)
    with pytest.raises(openai.APIError, match="exceeds 1024 bytes"):
        client = openai_client(sink.body, "text/event-stream")
        with client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            stream.get_final_completion()


async def test_oversized_responses_event_ends_with_an_error_event() -> None:
    responder, sink = await respond(
        _oversized(RESPONSES_STREAM),
        shaper=RESPONSES_STREAM.shaper(),
        content_type=b"text/event-stream",
        max_event_bytes=1024,
    )
    assert responder.aborted
    frames = events(sink.body)
    error = orjson.loads(frames[-1].data)
    assert frames[-1].event == "error"
    assert (error["type"], error["code"]) == ("error", "upstream_event_too_large")
    assert [orjson.loads(f.data)["sequence_number"] for f in frames] == [0, 1]
    client = openai_client(sink.body, "text/event-stream")
    with (
        pytest.raises(openai.APIError, match="exceeds 1024 bytes"),
        client.responses.stream(model="m", input="hi") as stream,
    ):
        stream.get_final_response()


async def test_oversized_anthropic_event_ends_with_an_error_event() -> None:
    responder, sink = await respond(
        _oversized(ANTHROPIC_STREAM),
        shaper=ANTHROPIC_STREAM.shaper(),
        content_type=b"text/event-stream",
        max_event_bytes=1024,
    )
    assert responder.aborted
    last = events(sink.body)[-1]
    assert last.event == "error"
    assert orjson.loads(last.data)["error"]["type"] == "api_error"
    with pytest.raises(anthropic.APIStatusError) as info:
        client = anthropic_client(sink.body, "text/event-stream")
        with client.messages.stream(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            s.get_final_message()
    assert info.value.type == "api_error"


async def test_corrupt_compressed_stream_ends_with_an_error_frame() -> None:
    body = gzip.compress(CHAT_STREAM.body)
    chunks = [body[:400], b"\xff" * 64 + body[464:]]
    responder, sink = await respond(
        chunks,
        shaper=CHAT_STREAM.shaper(),
        content_type=b"text/event-stream",
        headers=[(b"content-encoding", b"gzip")],
    )
    assert responder.abort_reason == "upstream_decode_error"
    assert b"reasoning_content" not in sink.body
    assert orjson.loads(events(sink.body)[-1].data)["error"]["code"] == "upstream_decode_error"


async def test_truncated_gzip_stream_ends_with_an_error_frame() -> None:
    body = gzip.compress(CHAT_STREAM.body)[:-20]
    responder, sink = await respond(
        [body],
        shaper=CHAT_STREAM.shaper(),
        content_type=b"text/event-stream",
        headers=[(b"content-encoding", b"gzip")],
    )
    assert responder.abort_reason == "upstream_decode_error"
    assert orjson.loads(events(sink.body)[-1].data)["error"]["code"] == "upstream_decode_error"


async def test_multi_member_gzip_is_decoded_whole() -> None:
    half = len(CHAT_STREAM.body) // 2
    body = gzip.compress(CHAT_STREAM.body[:half]) + gzip.compress(CHAT_STREAM.body[half:])
    _, sink = await respond(
        chunked(body, 300),
        shaper=CHAT_STREAM.shaper(),
        content_type=b"text/event-stream",
        headers=[(b"content-encoding", b"gzip")],
    )
    assert sink.body == await shape_async(CHAT_STREAM)
