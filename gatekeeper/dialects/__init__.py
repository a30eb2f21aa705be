"""API dialects: one module per wire format, found by request path. A dialect reads request
facts, writes its error bodies and names its shaper; the shaping itself is ``gatekeeper.reasoning``.

Paths are matched exactly (``/v1/chat/completions``, ``/v1/responses``, ``/v1/messages``;
no trailing slash, no query string). An app mounted under a prefix (``/openai/v1/...``) passes
that prefix as ``prefix``; gatekeeper never guesses one, so a path it does not recognise is
never treated as model traffic by accident.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.types import Send

from gatekeeper.dialects.anthropic_messages import AnthropicMessages
from gatekeeper.dialects.base import Dialect, RequestBodyError, RequestFacts
from gatekeeper.dialects.openai_chat import OpenAIChat
from gatekeeper.dialects.openai_responses import OpenAIResponses

#: Every dialect gatekeeper knows, one instance each (dialects are stateless).
DIALECTS: tuple[Dialect, ...] = (OpenAIChat(), OpenAIResponses(), AnthropicMessages())
#: The dialect whose error format answers a request of no dialect: OpenAI chat completions'.
DEFAULT_DIALECT: Dialect = DIALECTS[0]

_BY_PATH: dict[str, Dialect] = {path: d for d in DIALECTS for path in d.paths}
_BY_NAME: dict[str, Dialect] = {d.name: d for d in DIALECTS}


def dialect_for_path(path: str, *, prefix: str = "") -> Dialect | None:
    """The dialect serving ``path`` (the ASGI ``scope["path"]``), or ``None``.

    With ``prefix`` (e.g. ``"/openai"``), only paths under it match, and it is removed before
    the exact comparison.
    """
    if prefix:
        prefix = prefix.rstrip("/")
        if not path.startswith(prefix + "/"):
            return None
        path = path[len(prefix) :]
    return _BY_PATH.get(path)


def dialect_named(name: str) -> Dialect | None:
    """The dialect whose ``name`` is ``name`` (as recorded in ``input.request.dialect``)."""
    return _BY_NAME.get(name)


async def send_error_response(
    send: Send,
    dialect: Dialect | None,
    status: int,
    code: str,
    message: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a whole JSON error response in ``dialect``'s format (``DEFAULT_DIALECT``'s for a
    request of none), with ``headers`` after its content type and length."""
    body = orjson.dumps((dialect or DEFAULT_DIALECT).error_body(status, code, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


__all__ = [
    "DEFAULT_DIALECT",
    "DIALECTS",
    "AnthropicMessages",
    "Dialect",
    "OpenAIChat",
    "OpenAIResponses",
    "RequestBodyError",
    "RequestFacts",
    "dialect_for_path",
    "dialect_named",
    "send_error_response",
]
