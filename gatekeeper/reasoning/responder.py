"""The send-wrapper that enforces a reasoning policy on the response an app sends.

``Responder`` wraps an ASGI ``send`` callable (the Starlette pattern): the middleware passes
``responder`` to the app instead of ``send``. It adds the decision's headers to
``http.response.start`` and, when given a shaper, rewrites the body:

- ``application/json`` (and ``+json``): buffered up to ``max_json_bytes``, shaped, sent with a
  recomputed ``Content-Length``; the original bytes go out unchanged when shaping changed
  nothing.
- ``text/event-stream``: parsed with ``SSEDecoder``; each complete event is shaped and written
  as soon as it is complete, so nothing is held beyond the event in progress.
  ``Content-Length`` is dropped.
- any other type: passed through.

Shaping fails closed. A gzip/deflate body is decoded (``Content-Encoding`` dropped); any other
encoding, an oversized JSON body, unparseable JSON or a shaper error replaces the response with a
502 in the dialect's error format; an oversized SSE event or a decoding error mid-stream ends the
stream with the dialect's error frame. Nothing unshaped is ever sent. ``aborted`` and
``abort_reason`` tell the decision log what happened.

``before_end`` (optional) is awaited once a shaped response is complete, just before its last
bytes go out (continuity stores the reasoning it kept there).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

import orjson

from gatekeeper.reasoning.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    SSEDecoder,
    SSEEvent,
    SSEEventTooLarge,
    encode_event,
)

if TYPE_CHECKING:
    # Annotations only (the shapers are handed in by the enforcement).
    from gatekeeper.reasoning.shaper import ReasoningStats, ResponseShaper

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_JSON_BYTES = 32 << 20
_INFLATE_STEP = 64 << 10
_logger = logging.getLogger("gatekeeper.shaping")


class _Inflater:
    """Incremental gzip/deflate decoding with bounded output per step.

    ``deflate`` is zlib-wrapped by the HTTP spec, but some servers send raw deflate; like
    browsers and httpx, fall back to raw when the zlib header is wrong. A gzip body may hold
    several members. Truncated bodies and bytes after the end of a deflate stream are errors:
    they mean the body is not what the headers say.
    """

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._obj = self._new(raw=False)
        self._started = False

    def _new(self, *, raw: bool) -> Any:
        if raw:
            return zlib.decompressobj(-zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        try:
            pieces = self._drain(data)
        except zlib.error:
            if self._gzip or self._started:
                raise
            self._obj = self._new(raw=True)
            pieces = self._drain(data)
        self._started = True
        return pieces

    def flush(self) -> bytes:
        tail = self._obj.flush()
        if self._started and not self._obj.eof:
            raise zlib.error("compressed body ends before its end of stream")
        return bytes(tail)

    def _drain(self, data: bytes) -> list[bytes]:
        pieces = []
        while data:
            if self._obj.eof:
                if not self._gzip:
                    raise zlib.error("data after the end of the deflate stream")
                self._obj = self._new(raw=False)  # the next gzip member
            piece = self._obj.decompress(data, _INFLATE_STEP)
            if piece:
                pieces.append(piece)
            data = self._obj.unconsumed_tail or self._obj.unused_data
        return pieces


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _without(headers: list[tuple[bytes, bytes]], *names: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in names]


class Responder:
    """Wraps ``send`` for one response; await it with each ASGI message the app sends.

    ``status``, ``stats``, ``bytes_sent``, ``aborted`` and ``abort_reason`` are readable at any
    time, for the decision log.
    """

    def __init__(
        self,
        send: Send,
        *,
        shaper: ResponseShaper | None,
        extra_headers: list[tuple[bytes, bytes]],
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
        before_end: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._send = send
        self._before_end = before_end
        self.shaper = shaper
        self.extra_headers = list(extra_headers)
        self.max_event_bytes = max_event_bytes
        self.max_json_bytes = max_json_bytes
        self.status: int | None = None
        self.bytes_sent = 0
        self.aborted = False
        self.abort_reason: str | None = None
        self._mode: Literal["pass", "json", "sse", "done"] = "pass"
        self._start: Message | None = None
        self._start_sent = False
        self._trailers = False
        self._inflater: _Inflater | None = None
        self._body = bytearray()
        self._received = 0
        self._decoder: SSEDecoder | None = None

    @property
    def started(self) -> bool:
        """Whether the response's start has gone out to the client (after that, an error can
        only end the response, not replace it)."""
        return self._start_sent

    @property
    def stats(self) -> ReasoningStats | None:
        """The shaper's statistics (``None`` without a shaper)."""
        return self.shaper.stats if self.shaper is not None else None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._on_start(message)
        elif kind == "http.response.body":
            if self._mode == "pass":
                self.bytes_sent += len(message.get("body", b""))
                await self._send(message)
            elif self._mode == "json":
                await self._on_json_body(message)
            elif self._mode == "sse":
                await self._on_sse_body(message)
            # "done": the response was already ended (aborted); the rest is discarded.
        elif kind == "http.response.trailers":
            if self._mode != "done" or self._trailers:
                await self._send(message)
        elif self._mode == "pass":
            await self._send(message)
        elif self._mode in ("json", "sse"):
            # e.g. http.response.pathsend: a body gatekeeper cannot read cannot be shaped.
            await self._abort("unshapeable_body", f"cannot shape an ASGI {kind!r} message")

    async def _on_start(self, message: Message) -> None:
        self.status = int(message["status"])
        headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        headers += self.extra_headers
        start: Message = {**message, "headers": headers}
        self._trailers = bool(message.get("trailers", False))
        if self.shaper is None:
            self._start_sent = True
            await self._send(start)
            return
        media = (_header(headers, b"content-type") or b"").split(b";")[0].strip().lower()
        if media == b"application/json" or media.endswith(b"+json"):
            self._mode = "json"
        elif media == b"text/event-stream":
            self._mode = "sse"
        else:
            self._start_sent = True
            await self._send(start)
            return
        encoding = (_header(headers, b"content-encoding") or b"identity").strip().lower()
        if encoding in (b"gzip", b"x-gzip", b"deflate"):
            self._inflater = _Inflater(encoding.decode("ascii"))
        elif encoding != b"identity":
            self._start = start
            await self._abort(
                "unsupported_content_encoding",
                f"cannot shape a response with content-encoding {encoding.decode('latin-1')}",
            )
            return
        if self._mode == "json":
            self._start = start
            return
        # Streams go out at once, re-framed by gatekeeper: length and encoding no longer apply.
        start["headers"] = _without(headers, b"content-length", b"content-encoding")
        self._decoder = SSEDecoder(max_event_bytes=self.max_event_bytes)
        self._start = start
        self._start_sent = True
        await self._send(start)

    # -- JSON -----------------------------------------------------------------------------

    async def _on_json_body(self, message: Message) -> None:
        body = bytes(message.get("body", b""))
        self._received += len(body)
        try:
            pieces = self._inflater.feed(body) if self._inflater is not None else [body]
        except zlib.error:
            await self._abort("upstream_decode_error", "could not decode the upstream body")
            return
        for piece in pieces:
            self._body += piece
            if len(self._body) > self.max_json_bytes:
                await self._abort(
                    "upstream_body_too_large",
                    f"upstream JSON body exceeds {self.max_json_bytes} bytes",
                )
                return
        if message.get("more_body", False):
            return
        if self._inflater is not None:
            try:
                self._body += self._inflater.flush()
            except zlib.error:
                await self._abort("upstream_decode_error", "could not decode the upstream body")
                return
        await self._finish_json()

    async def _finish_json(self) -> None:
        assert self._start is not None and self.shaper is not None
        raw = bytes(self._body)
        self._body.clear()
        headers: list[tuple[bytes, bytes]] = self._start["headers"]
        if not self._received:
            # No body (HEAD, 204, 304): nothing to shape, headers stay as sent.
            await self._send_whole(self._start, raw)
            return
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self._abort(
                "upstream_invalid_json", "upstream sent a JSON body that does not parse"
            )
            return
        try:
            shaped = await self.shaper.shape_json(document)
        except Exception:
            _logger.exception("reasoning shaper failed on a JSON body")
            await self._abort("shaping_error", "gatekeeper could not shape the response")
            return
        if shaped is not document:
            raw = orjson.dumps(shaped)
        headers = _without(headers, b"content-length", b"content-encoding")
        headers.append((b"content-length", str(len(raw)).encode("ascii")))
        await self._ending()
        await self._send_whole({**self._start, "headers": headers}, raw)

    async def _send_whole(self, start: Message, body: bytes) -> None:
        self._mode = "done"
        self._start_sent = True
        await self._send(start)
        self.bytes_sent += len(body)
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    # -- SSE ------------------------------------------------------------------------------

    async def _on_sse_body(self, message: Message) -> None:
        assert self._decoder is not None and self.shaper is not None
        more = bool(message.get("more_body", False))
        body = bytes(message.get("body", b""))
        out = bytearray()
        try:
            pieces = self._inflater.feed(body) if self._inflater is not None else [body]
            if not more and self._inflater is not None:
                pieces.append(self._inflater.flush())
            for piece in pieces:
                try:
                    frames = self._decoder.feed(piece)
                except SSEEventTooLarge as exc:
                    # Events completed before the oversized one still go out, shaped.
                    for frame in exc.completed:
                        out += await self._shape_frame(frame)
                    raise
                for frame in frames:
                    out += await self._shape_frame(frame)
            if not more:
                self._decoder.close()
                for event in await self.shaper.finish():
                    out += encode_event(event)
        except SSEEventTooLarge as exc:
            await self._abort(exc.code, str(exc), prefix=bytes(out))
            return
        except zlib.error:
            await self._abort(
                "upstream_decode_error", "could not decode the upstream body", bytes(out)
            )
            return
        except Exception:
            _logger.exception("reasoning shaper failed on an SSE event")
            await self._abort(
                "shaping_error", "gatekeeper could not shape the response", bytes(out)
            )
            return
        if not more:
            await self._ending()
        if out or not more:
            self.bytes_sent += len(out)
            await self._send({"type": "http.response.body", "body": bytes(out), "more_body": more})
        if not more:
            self._mode = "done"

    async def _shape_frame(self, frame: SSEEvent) -> bytes:
        assert self.shaper is not None
        if not frame.dispatch:
            return frame.raw or b""  # comments and keep-alives carry no event
        out = bytearray()
        for event in await self.shaper.shape_event(frame):
            out += event.raw if event.raw is not None else encode_event(event)
        return bytes(out)

    async def _ending(self) -> None:
        """Run the ``before_end`` hook: the response is shaped whole, its last bytes not sent.

        Continuity stores what it kept here, so a client that answers as soon as it has the
        response finds it stored. Never fails the response.
        """
        if self._before_end is None:
            return
        try:
            await self._before_end()
        except Exception:
            _logger.exception("before_end hook failed; the response is sent anyway")

    # -- failing closed -------------------------------------------------------------------

    async def _abort(self, code: str, message: str, prefix: bytes = b"") -> None:
        """End the response without sending anything unshaped."""
        assert self.shaper is not None
        self.aborted = True
        self.abort_reason = code
        self._mode = "done"
        _logger.warning("response aborted while shaping: %s (%s)", code, message)
        if self._start_sent:
            body = prefix + b"".join(
                encode_event(e) for e in self.shaper.abort_events(code, message)
            )
            self.bytes_sent += len(body)
            await self._send({"type": "http.response.body", "body": body, "more_body": False})
            return
        # The start line is still held: replace the whole response with a 502 error.
        self.status = 502
        self._trailers = False
        body = orjson.dumps(self.shaper.error_document(502, code, message))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            *self.extra_headers,
        ]
        self._body.clear()
        await self._send_whole(
            {"type": "http.response.start", "status": 502, "headers": headers}, body
        )
