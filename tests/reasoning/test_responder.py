"""The Responder send-wrapper: headers, pass-through, JSON bodies, failing closed."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import anthropic
import openai
import orjson
import pytest

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.reasoning import Responder, ResponseShaper, SSEEvent
from tests.reasoning.recorded import (
    ANTHROPIC_JSON,
    CHAT_JSON,
    CHAT_STREAM,
    EXTRA,
    Collector,
    Recording,
    chunked,
    drop,
    respond,
    shape_async,
)
from tests.reasoning.sdk import anthropic_client, openai_client

# -- headers and pass-through -------------------------------------------------------------


async def test_without_shaper_messages_pass_through_with_extra_headers() -> None:
    sink = Collector()
    responder = Responder(sink, shaper=None, extra_headers=EXTRA)
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": 201,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
    }
    await responder(start)
    await responder({"type": "http.response.body", "body": b"{}", "more_body": False})
    assert sink.start["headers"] == [*start["headers"], *EXTRA]
    assert sink.messages[1] == {"type": "http.response.body", "body": b"{}", "more_body": False}
    assert (responder.status, responder.bytes_sent, responder.aborted) == (201, 2, False)
    assert responder.stats is None


@pytest.mark.parametrize("recording", [CHAT_JSON, CHAT_STREAM], ids=["json", "sse"])
async def test_extra_headers_are_added_when_shaping(recording: Recording) -> None:
    _, sink = await respond(
        [recording.body],
        shaper=recording.shaper(),
        content_type=recording.content_type,
        extra_headers=EXTRA,
    )
    for name, value in EXTRA:
        assert sink.header(name) == value


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/octet-stream", b"text/html"])
async def test_other_content_types_pass_through_unchanged(content_type: bytes) -> None:
    body = b'{"choices":[{"message":{"reasoning_content":"x"}}]}'
    _, sink = await respond(
        [body],
        shaper=drop("openai_chat"),
        content_type=content_type,
        headers=[(b"content-length", b"53")],
    )
    assert sink.body == body
    assert sink.header(b"content-length") == b"53"


# -- JSON ---------------------------------------------------------------------------------


async def test_json_content_length_is_recomputed() -> None:
    original_length = str(len(CHAT_JSON.body)).encode()
    responder, sink = await respond(
        chunked(CHAT_JSON.body, 100),
        shaper=CHAT_JSON.shaper(),
        content_type=b"application/json; charset=utf-8",
        headers=[(b"content-length", original_length)],
    )
    lengths = [v for k, v in sink.start["headers"] if k == b"content-length"]
    assert lengths == [str(len(sink.body)).encode()]
    assert len(sink.body) < len(CHAT_JSON.body)
    assert b"reasoning_content" not in sink.body
    assert responder.bytes_sent == len(sink.body)
    assert [m["type"] for m in sink.messages] == ["http.response.start", "http.response.body"]


async def test_json_without_reasoning_is_forwarded_byte_for_byte() -> None:
    body = (
        b'{\n  "id": "x",\n  "choices": '
        b'[{"index": 0, "message": {"role": "assistant", "content": "hi"}}]\n}'
    )
    _, sink = await respond([body], shaper=drop("openai_chat"), content_type=b"application/json")
    assert sink.body == body


async def test_empty_json_body_keeps_its_headers() -> None:
    headers = [(b"content-length", b"1234")]  # e.g. the answer to a HEAD request
    _, sink = await respond(
        [b""], shaper=drop("openai_chat"), content_type=b"application/json", headers=headers
    )
    assert sink.body == b""
    assert sink.header(b"content-length") == b"1234"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        (b"gzip", gzip.compress),
        (b"deflate", zlib.compress),
        (b"deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
async def test_compressed_json_is_decoded_and_shaped(encoding: bytes, compress: Any) -> None:
    body = compress(ANTHROPIC_JSON.body)
    _, sink = await respond(
        chunked(body, 50),
        shaper=ANTHROPIC_JSON.shaper(),
        content_type=b"application/json",
        headers=[(b"content-encoding", encoding), (b"content-length", str(len(body)).encode())],
    )
    assert sink.header(b"content-encoding") is None
    assert sink.header(b"content-length") == str(len(sink.body)).encode()
    assert sink.body == await shape_async(ANTHROPIC_JSON)


@pytest.mark.parametrize(
    ("recording", "kind"),
    [(CHAT_JSON, "openai"), (ANTHROPIC_JSON, "anthropic")],
    ids=["openai", "anthropic"],
)
@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ([(b"content-encoding", b"br")], None, "unsupported_content_encoding"),
        ([(b"content-encoding", b"gzip, br")], None, "unsupported_content_encoding"),
        ([(b"content-encoding", b"gzip")], b"not gzip at all", "upstream_decode_error"),
        ([], b'{"choices": [', "upstream_invalid_json"),
    ],
    ids=["brotli", "stacked-encodings", "corrupt-gzip", "truncated-json"],
)
async def test_json_that_cannot_be_shaped_becomes_a_502_in_the_dialect_format(
    recording: Recording,
    kind: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    reason: str,
) -> None:
    responder, sink = await respond(
        [body if body is not None else recording.body],
        shaper=recording.shaper(),
        content_type=b"application/json",
        headers=headers,
        extra_headers=EXTRA,
    )
    assert (responder.status, responder.aborted, responder.abort_reason) == (502, True, reason)
    assert sink.start["status"] == 502
    assert sink.header(b"content-encoding") is None
    assert sink.header(b"ratelimit") == EXTRA[0][1]
    document = orjson.loads(sink.body)
    assert document["error"]["code"] == reason
    if kind == "anthropic":
        assert document["type"] == "error"
        assert document["error"]["type"] == "api_error"
        with pytest.raises(anthropic.InternalServerError) as info:
            anthropic_client(sink.body, "application/json", 502).messages.create(
                model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.type == "api_error"
    else:
        with pytest.raises(openai.InternalServerError) as oinfo:
            openai_client(sink.body, "application/json", 502).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        assert oinfo.value.code == reason


async def test_oversized_json_is_refused_not_passed_through() -> None:
    responder, sink = await respond(
        chunked(CHAT_JSON.body, 64),
        shaper=CHAT_JSON.shaper(),
        content_type=b"application/json",
        max_json_bytes=256,
    )
    assert responder.abort_reason == "upstream_body_too_large"
    assert sink.start["status"] == 502
    assert b"reasoning_content" not in sink.body
    assert b"strawberry" not in sink.body


async def test_messages_after_an_abort_are_discarded() -> None:
    sink = Collector()
    responder = Responder(sink, shaper=drop("openai_chat"), extra_headers=[], max_json_bytes=8)
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await responder(
        {"type": "http.response.body", "body": b'{"a": "0123456789"', "more_body": True}
    )
    sent = len(sink.messages)
    await responder({"type": "http.response.body", "body": b"}", "more_body": False})
    assert len(sink.messages) == sent == 2


async def test_truncated_gzip_json_is_refused() -> None:
    body = gzip.compress(CHAT_JSON.body)[:-20]
    responder, sink = await respond(
        [body],
        shaper=CHAT_JSON.shaper(),
        content_type=b"application/json",
        headers=[(b"content-encoding", b"gzip")],
    )
    assert responder.abort_reason == "upstream_decode_error"
    assert sink.start["status"] == 502


async def test_data_after_a_deflate_stream_is_refused() -> None:
    body = zlib.compress(CHAT_JSON.body) + b"trailing"
    responder, _ = await respond(
        [body],
        shaper=CHAT_JSON.shaper(),
        content_type=b"application/json",
        headers=[(b"content-encoding", b"deflate")],
    )
    assert responder.abort_reason == "upstream_decode_error"


class _Broken(ResponseShaper):
    async def shape_json(self, document: Any) -> Any:
        raise RuntimeError("bug")

    async def shape_event(self, event: SSEEvent) -> list[SSEEvent]:
        raise RuntimeError("bug")

    def error_document(self, status: int, code: str, message: str) -> dict[str, Any]:
        return {"error": {"code": code}}

    def abort_events(self, code: str, message: str) -> list[SSEEvent]:
        return [SSEEvent(data=orjson.dumps({"error": {"code": code}}).decode())]


@pytest.mark.parametrize("recording", [CHAT_JSON, CHAT_STREAM], ids=["json", "sse"])
async def test_a_failing_shaper_fails_closed(recording: Recording) -> None:
    responder, sink = await respond(
        [recording.body],
        shaper=_Broken(ReasoningPolicy(mode="drop")),
        content_type=recording.content_type,
    )
    assert responder.abort_reason == "shaping_error"
    assert b"reasoning" not in sink.body
    assert b"shaping_error" in sink.body


async def test_unreadable_body_messages_fail_closed() -> None:
    sink = Collector()
    responder = Responder(sink, shaper=drop("openai_chat"), extra_headers=[])
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await responder({"type": "http.response.pathsend", "path": "/tmp/body.json"})
    assert responder.abort_reason == "unshapeable_body"
    assert sink.start["status"] == 502


async def test_trailers_are_forwarded() -> None:
    sink = Collector()
    responder = Responder(sink, shaper=CHAT_STREAM.shaper(), extra_headers=[])
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "trailers": True,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    await responder({"type": "http.response.body", "body": CHAT_STREAM.body, "more_body": False})
    await responder(
        {"type": "http.response.trailers", "headers": [(b"x-usage", b"1")], "more_trailers": False}
    )
    assert sink.messages[-1]["type"] == "http.response.trailers"


def test_responder_is_usable_from_sync_tests() -> None:
    # The helper used by the recorded-fixture tests runs its own loop.
    responder, _ = asyncio.run(
        respond([b"{}"], shaper=drop("openai_chat"), content_type=b"application/json")
    )
    assert responder.status == 200
