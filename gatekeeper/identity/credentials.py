"""Reading the caller's API key from request headers."""

from __future__ import annotations

from collections.abc import Iterable


def api_key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key sent as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``.

    ``Authorization`` wins when both are present (the OpenAI SDK sends it; the Anthropic SDK
    sends ``x-api-key``). An empty or non-Bearer value counts as no key.
    """
    bearer: str | None = None
    x_api_key: str | None = None
    for name, value in headers:
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key" and x_api_key is None:
            x_api_key = value.decode("latin-1").strip() or None
    return bearer or x_api_key
