"""The recorded provider responses in tests/fixtures/streams, and helpers to run and inspect them.

Shared by tests/reasoning and tests/dialects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.contract import ReasoningPolicy
from gatekeeper.dialects import Dialect, dialect_named
from gatekeeper.reasoning import Responder, ResponseShaper, SSEDecoder, SSEEvent

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "streams"
_DIALECT_BY_PREFIX = {
    "openai-chat": "openai_chat",
    "openai-responses": "openai_responses",
    "anthropic-messages": "anthropic_messages",
}


@dataclass(frozen=True)
class Recording:
    """One recorded response body."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dialect(self) -> Dialect:
        dialect = dialect_named(_DIALECT_BY_PREFIX[self.name.split("__")[0]])
        assert dialect is not None
        return dialect

    @property
    def streamed(self) -> bool:
        return self.path.suffix == ".sse"

    @property
    def content_type(self) -> bytes:
        return b"text/event-stream" if self.streamed else b"application/json"

    @property
    def body(self) -> bytes:
        return self.path.read_bytes()

    def shaper(self, mode: str = "drop") -> ResponseShaper:
        return self.dialect.new_shaper(ReasoningPolicy.model_validate({"mode": mode}))


RECORDINGS = sorted(
    (Recording(p) for p in FIXTURES.iterdir() if p.suffix in (".sse", ".json")),
    key=lambda r: r.name,
)
STREAMS = [r for r in RECORDINGS if r.streamed]
DOCUMENTS = [r for r in RECORDINGS if not r.streamed]


def ids(recordings: Iterable[Recording]) -> list[str]:
    return [r.path.stem for r in recordings]


class Collector:
    """An ASGI ``send`` that records every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def start(self) -> dict[str, Any]:
        return next(m for m in self.messages if m["type"] == "http.response.start")

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )

    def header(self, name: bytes) -> bytes | None:
        values = [v for k, v in self.start["headers"] if k.lower() == name]
        return values[-1] if values else None


async def respond(
    body_chunks: list[bytes],
    *,
    shaper: ResponseShaper | None,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    **options: Any,
) -> tuple[Responder, Collector]:
    """Run one response through a ``Responder``: a start, then one body message per chunk."""
    sink = Collector()
    responder = Responder(sink, shaper=shaper, extra_headers=extra_headers or [], **options)
    await responder(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), *(headers or [])],
        }
    )
    chunks = body_chunks or [b""]
    for position, chunk in enumerate(chunks):
        await responder(
            {"type": "http.response.body", "body": chunk, "more_body": position < len(chunks) - 1}
        )
    return responder, sink


def shape(recording: Recording, mode: str = "drop", chunks: list[bytes] | None = None) -> bytes:
    """The body a client receives for ``recording`` under ``mode`` (from synchronous code)."""
    return asyncio.run(shape_async(recording, mode, chunks))


async def shape_async(
    recording: Recording, mode: str = "drop", chunks: list[bytes] | None = None
) -> bytes:
    """The body a client receives for ``recording`` under ``mode``."""
    _, sink = await respond(
        chunks if chunks is not None else [recording.body],
        shaper=recording.shaper(mode),
        content_type=recording.content_type,
    )
    return sink.body


def events(body: bytes) -> list[SSEEvent]:
    """Every dispatched event of an SSE body."""
    decoder = SSEDecoder()
    return [e for e in decoder.feed(body) if e.dispatch]


def documents(body: bytes) -> Iterator[dict[str, Any]]:
    """The JSON documents of an SSE body (``[DONE]`` skipped)."""
    for event in events(body):
        if not event.data.startswith("[DONE]"):
            yield orjson.loads(event.data)


def strings(value: Any) -> Iterator[str]:
    """Every string leaf of a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)


def parsed(recording: Recording, body: bytes) -> list[Any]:
    """The JSON documents of a body (one for JSON bodies)."""
    return list(documents(body)) if recording.streamed else [orjson.loads(body)]


def reasoning_strings(recording: Recording, body: bytes | None = None) -> list[str]:
    """The reasoning texts and opaque reasoning payloads in a recording's body (by default the
    original one).

    Whole texts (joined deltas, final texts), signatures, encrypted and redacted payloads, and
    every fragment long enough not to occur in the answer by chance.
    """
    found: list[str] = []
    joined: dict[Any, list[str]] = {}
    for doc in parsed(recording, recording.body if body is None else body):
        _reasoning_in(doc, found, joined)
    # A short fragment ("professional") may occur in the answer too; whole texts cannot.
    whole = ["".join(parts) for parts in joined.values()]
    return sorted({s for s in found if len(s.strip()) >= 24} | {s for s in whole if s.strip()})


_CHAT_KEYS = ("reasoning_content", "reasoning", "thinking")
_REASONING_TYPES = ("reasoning", "thinking", "redacted_thinking", "reasoning_text", "summary_text")


def _without_types(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_types(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_types(v) for k, v in value.items() if k not in ("type", "status")}
    return value


def _reasoning_in(doc: Any, found: list[str], joined: dict[Any, list[str]]) -> None:
    if not isinstance(doc, dict):
        return
    for choice in doc.get("choices") or []:
        for key in ("message", "delta"):
            message = choice.get(key) or {}
            for name in _CHAT_KEYS:
                if isinstance(message.get(name), str):
                    found.append(message[name])
                    joined.setdefault((choice.get("index"), name), []).append(message[name])
            for detail in message.get("reasoning_details") or []:
                found.extend(s for s in strings(detail) if len(s) > 20)
    kind = doc.get("type", "")
    if "reasoning" in kind:
        for key in ("delta", "text"):
            if isinstance(doc.get(key), str):
                found.append(doc[key])
        if kind.endswith(".delta"):
            joined.setdefault(("responses", doc.get("item_id")), []).append(doc["delta"])
    for item in _items(doc):
        if isinstance(item, dict) and item.get("type") in _REASONING_TYPES:
            found.extend(s for s in strings(_without_types(item)))
    if kind == "content_block_delta":
        delta = doc.get("delta") or {}
        for key in ("thinking", "signature"):
            if isinstance(delta.get(key), str):
                found.append(delta[key])
                joined.setdefault(("anthropic", doc.get("index"), key), []).append(delta[key])


def _items(doc: dict[str, Any]) -> Iterator[Any]:
    """Output items / content blocks anywhere in a document."""
    for container in (doc, doc.get("response") or {}, doc.get("message") or {}):
        if isinstance(container, dict):
            yield from container.get("output") or []
            if isinstance(container.get("content"), list):
                yield from container["content"]
    for key in ("item", "content_block", "part"):
        if isinstance(doc.get(key), dict):
            yield doc[key]


# Recordings and values the responder tests use by name.
BY_NAME = {r.path.stem: r for r in RECORDINGS}
CHAT_STREAM = BY_NAME["openai-chat__pydantic-ai__1"]
CHAT_JSON = BY_NAME["openai-chat__vercel-ai__1"]
ANTHROPIC_STREAM = BY_NAME["anthropic-messages__pydantic-ai__1"]
ANTHROPIC_JSON = BY_NAME["anthropic-messages__vercel-ai__1"]
RESPONSES_STREAM = BY_NAME["openai-responses__pydantic-ai__3"]
EXTRA = [(b"ratelimit", b'"burst";r=4;t=10'), (b"x-gatekeeper-policy", b"rev-1")]


def drop(name: str) -> ResponseShaper:
    """A drop-mode shaper of the dialect called ``name``."""
    dialect = dialect_named(name)
    assert dialect is not None
    return dialect.new_shaper(ReasoningPolicy(mode="drop"))


def chunked(body: bytes, size: int) -> list[bytes]:
    """``body`` cut into pieces of ``size`` bytes."""
    return [body[i : i + size] for i in range(0, len(body), size)]
