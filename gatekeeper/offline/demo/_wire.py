"""HTTP plumbing shared by the demo dialects: reading JSON bodies, JSON and SSE responses."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatekeeper.offline.demo._reasoner import Completion, Prompt, think

# Fixed, so identical requests give byte-identical responses (real servers put "now" here).
DEMO_CREATED = 1767225600  # 2026-01-01T00:00:00Z

MODEL_ID = "demo-reasoner"

# Keys that only change the transport, not the content; leaving them out of the request key
# makes a streamed response carry the same ids and text as the non-streamed one.
_TRANSPORT_KEYS = frozenset({"stream", "stream_options"})


class InvalidRequest(Exception):
    """The request is unusable; rendered as a 400 in the calling dialect's error format."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class Vendor:
    """What the dialects of one vendor's API share: how they refuse a request body that is not
    JSON (``not_json``, which may hold a ``{detail}`` field) or is otherwise unusable
    (``invalid``, given the exception and the request id), and the response header that
    carries the request id."""

    not_json: str
    id_header: str
    invalid: Callable[[InvalidRequest, str], Response]


class Reply(Protocol):
    """A dialect's answer to one request, whole or streamed."""

    def document(self) -> Any:
        """The response body, for a request without ``stream: true``."""
        ...

    def frames(self) -> Iterable[bytes]:
        """The SSE frames, for a request with ``stream: true``."""
        ...


def endpoint(
    vendor: Vendor,
    parse: Callable[[dict[str, Any]], Prompt],
    reply: Callable[[dict[str, Any], Prompt, Completion], Reply],
) -> Callable[[Request], Awaitable[Response]]:
    """The request handler of one dialect, which says only what differs.

    The handler reads the JSON body, ``parse``s it into a prompt (refusals in the ``vendor``'s
    format), thinks, wraps body, prompt and completion in a :class:`Reply`, and answers with
    its document as JSON or, when the body says ``stream: true``, its SSE frames. The request
    id (``req_`` and the start of the request key) goes in the vendor's id header.
    """

    async def handle(request: Request) -> Response:
        try:
            body = await read_object(request, vendor.not_json)
            prompt = parse(body)
        except InvalidRequest as exc:
            return vendor.invalid(exc, raw_request_id(await request.body()))
        answer = reply(body, prompt, think(prompt))
        headers = {vendor.id_header: f"req_{prompt.key[:24]}"}
        if body.get("stream") is True:
            return sse_response(answer.frames(), delay=stream_delay(request), headers=headers)
        return json_response(answer.document(), headers=headers)

    return handle


async def read_object(request: Request, not_json: str) -> dict[str, Any]:
    """The JSON object in the request body, else :class:`InvalidRequest` with ``not_json``
    (which may hold a ``{detail}`` field for the parser's message)."""
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(not_json.format(detail=exc)) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def request_key(body: Mapping[str, Any]) -> str:
    """A digest of the request's content, seeding every id in the response."""
    content = {k: v for k, v in body.items() if k not in _TRANSPORT_KEYS}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def raw_request_id(raw: bytes) -> str:
    """A request id for responses sent before the body parsed (errors)."""
    return "req_" + hashlib.sha256(raw).hexdigest()[:24]


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str]) -> Response:
    """A JSON response serialised with orjson."""
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def sse_frame(data: Any, event: str | None = None) -> bytes:
    """One SSE event: an optional ``event:`` line, one ``data:`` line, then the blank line."""
    head = b"event: " + event.encode() + b"\n" if event is not None else b""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return head + b"data: " + payload + b"\n\n"


def sse_response(
    frames: Iterable[bytes], *, delay: float, headers: Mapping[str, str]
) -> StreamingResponse:
    """Stream ``frames`` one network write each, pausing ``delay`` seconds between them."""
    sse_headers = {"cache-control": "no-cache", **headers}
    return StreamingResponse(
        _paced(list(frames), delay), media_type="text/event-stream", headers=sse_headers
    )


async def _paced(frames: list[bytes], delay: float) -> AsyncIterator[bytes]:
    for index, frame in enumerate(frames):
        if delay > 0 and index:
            await asyncio.sleep(delay)
        yield frame


def stream_delay(request: Request) -> float:
    """The pause between stream events configured on the app (see ``create_model_app``)."""
    return float(getattr(request.app.state, "stream_delay", 0.0))


def text_of(content: Any) -> str:
    """The text of a message's ``content``: a string, or the ``text`` of each part in a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(t for t in texts if isinstance(t, str))
    return ""


def positive_int(value: Any) -> int | None:
    """``value`` if it is a positive integer (JSON ``true`` is not), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None
