"""HTTP plumbing shared by the demo dialects: reading JSON bodies, JSON and SSE responses."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

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
