"""Helpers shared by the dialects for reading requests: typed access to request fields and
prompt measurement; and what OpenAI's two dialects share. JSON and the error bodies are in
``gatekeeper.wire``."""

from __future__ import annotations

from typing import Any

from gatekeeper.contract import PromptFeatures
from gatekeeper.dialects.base import Dialect, RequestBodyError, RequestFacts
from gatekeeper.wire import openai_error, text_leaves

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


class OpenAIDialect(Dialect):
    """An OpenAI API dialect (chat completions, responses): errors in OpenAI's format."""

    def error_body(
        self, status: int, code: str, message: str, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return openai_error(status, code, message)


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
    return sum(map(len, text_leaves(value, _NON_TEXT_KEYS)))


def request_facts(
    dialect: Dialect,
    body: dict[str, Any],
    *,
    messages: int,
    prompt: list[Any],
    max_tokens: int | None,
    has_tools: bool,
    has_tool_results: bool,
    reasoning_requested: bool,
) -> RequestFacts:
    """The facts every dialect reports alike: ``model`` and ``stream`` from the body, the
    prompt's features, and the cost estimate from its characters (``text_chars`` of ``prompt``,
    the parts of the body that hold prompt text) and output limit."""
    chars = text_chars(prompt)
    return RequestFacts(
        model=opt_str(body, "model"),
        stream=bool(opt_bool(body, "stream")),
        reasoning_requested=reasoning_requested,
        max_tokens=max_tokens,
        estimated_tokens=dialect.estimated_tokens(chars, max_tokens),
        # Not validated: every dialect passes len(), bool() and any() results (ints and bools,
        # as mypy holds them). A copy costs less than a validation on the request path, where
        # pydantic-core's validator is cold: request_facts 17.8-18.8 -> 12.3-13.4 µs.
        prompt_features=_NO_FEATURES.with_valid(
            messages=messages,
            chars=chars,
            has_tools=has_tools,
            has_tool_results=has_tool_results,
        ),
    )


#: What ``request_facts`` copies and fills in (every field).
_NO_FEATURES = PromptFeatures()


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
