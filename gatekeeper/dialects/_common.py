"""Helpers shared by the dialects: typed access to request fields, prompt measurement, JSON,
and the two error-body families (OpenAI's and Anthropic's)."""

from __future__ import annotations

from typing import Any

import orjson

from gatekeeper.dialects.base import RequestBodyError

# Keys whose string values are not prompt text: identifiers, enums, opaque or binary payloads.
# Base64 images or signatures would otherwise dominate the character count.
_NON_TEXT_KEYS = frozenset(
    {
        "type",
        "role",
        "id",
        "call_id",
        "tool_call_id",
        "tool_use_id",
        "signature",
        "encrypted_content",
        "data",
        "source",
        "image_url",
        "file_data",
        "file_id",
        "url",
        "media_type",
        "cache_control",
        "status",
    }
)


def dumps(value: Any) -> str:
    """Compact JSON text (orjson), for re-encoded SSE data."""
    return orjson.dumps(value).decode("utf-8")


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestBodyError(f"request body must be a JSON object, not {_kind(body)}")
    return body


def opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise RequestBodyError(f"'{key}' must be a string, not {_kind(value)}")


def opt_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise RequestBodyError(f"'{key}' must be a boolean, not {_kind(value)}")


def opt_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int in Python but not in JSON Schema.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestBodyError(f"'{key}' must be an integer, not {_kind(value)}")
    if value < 0:
        raise RequestBodyError(f"'{key}' must not be negative")
    return value


def opt_object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise RequestBodyError(f"'{key}' must be an object, not {_kind(value)}")


def opt_list(body: dict[str, Any], key: str) -> list[Any] | None:
    value = body.get(key)
    if value is None or isinstance(value, list):
        return value
    raise RequestBodyError(f"'{key}' must be an array, not {_kind(value)}")


def object_items(items: list[Any], key: str) -> list[dict[str, Any]]:
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestBodyError(f"'{key}[{position}]' must be an object, not {_kind(item)}")
    return items


def text_chars(value: Any) -> int:
    """Characters of prompt text in a JSON value: the sum of its string leaves, skipping
    identifier, enum and binary keys (see ``_NON_TEXT_KEYS``)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(text_chars(item) for item in value)
    if isinstance(value, dict):
        return sum(text_chars(v) for k, v in value.items() if k not in _NON_TEXT_KEYS)
    return 0


def nested_int(document: Any, *path: str) -> int | None:
    """``document[path[0]][path[1]]...`` when every step is an object and the leaf an int."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    if isinstance(document, int) and not isinstance(document, bool):
        return document
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


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
# invalid_request_error, as the docs say, and other 5xx api_error.
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    451: "permission_error",
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
