"""Wire helpers shared by the dialects and the reasoning shapers: compact JSON, typed reads of
response fields, and the two error-body families (OpenAI's and Anthropic's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text (orjson), for re-encoded SSE data."""
    return orjson.dumps(value).decode("utf-8")


def text_leaves(value: Any, skip: frozenset[str]) -> Iterator[str]:
    """Every string inside a JSON value, depth first, except under the object keys in
    ``skip`` (identifiers, enums, binary payloads: whatever is not prompt text)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from text_leaves(item, skip)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from text_leaves(item, skip)


def nested_int(document: Any, *path: str) -> int | None:
    """``document[path[0]][path[1]]...`` when every step is an object and the leaf an int."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    if isinstance(document, int) and not isinstance(document, bool):
        return document
    return None


# OpenAI's SDKs pick the exception class from the HTTP status alone; ``type`` is informative.
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    451: "permission_error",
}

# Anthropic's documented error types per status (docs.claude.com/en/api/errors); other 4xx use
# invalid_request_error, as the docs say, and other 5xx api_error. Every status OpenAI names,
# Anthropic names alike.
_ANTHROPIC_ERROR_TYPES = {
    **_OPENAI_ERROR_TYPES,
    402: "billing_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error_type(status: int) -> str:
    if status in _OPENAI_ERROR_TYPES:
        return _OPENAI_ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def anthropic_error_type(status: int) -> str:
    if status in _ANTHROPIC_ERROR_TYPES:
        return _ANTHROPIC_ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def openai_error(status: int, code: str, message: str) -> dict[str, Any]:
    """``{"error": {message, type, param, code}}``; ``code`` carries gatekeeper's reason code
    (openai-python copies it onto the exception as ``exc.code``)."""
    return {
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": None,
            "code": code,
        }
    }


def anthropic_error(
    status: int, code: str, message: str, request_id: str | None = None
) -> dict[str, Any]:
    """``{"type": "error", "error": {type, message, code}, "request_id"}``.

    ``error.code`` (not in Anthropic's schema; the SDK keeps unknown keys) carries gatekeeper's
    reason code at the same path as in OpenAI bodies: ``exc.body["error"]["code"]``.
    A process shedding load (code ``overloaded``) says so as Anthropic does: ``overloaded_error``.
    """
    kind = "overloaded_error" if code == "overloaded" else anthropic_error_type(status)
    return {
        "type": "error",
        "error": {"type": kind, "message": message, "code": code},
        "request_id": request_id,
    }
