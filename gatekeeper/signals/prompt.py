"""The prompt text the signals read, from a parsed request body of any of the three dialects.

What is read: the standing instructions (Anthropic's ``system``, the Responses API's
``instructions``, and ``system``/``developer`` messages) and the last user turn, the part of
the request that asks for something now. Earlier turns, assistant output, tool results, images
and files are not read: they make every turn of a conversation look new and are not what the
caller is asking for. A text longer than ``limit`` characters keeps its first three quarters
and its last quarter of that (instructions sit at either end).

Dialect-agnostic on purpose: it reads the shapes all three APIs share (a ``messages`` or
``input`` list of ``{role, content}`` items, ``content`` a string or a list of parts with
``text``), so the dialect modules stay exactly as they are.
"""

from __future__ import annotations

from typing import Any

_INSTRUCTION_ROLES = frozenset({"system", "developer"})


def prompt_text(document: Any, limit: int = 2000) -> str:
    """Instructions and the last user turn of a request body, joined by newlines."""
    if not isinstance(document, dict):
        return ""
    pieces: list[str] = []
    size = 0
    for key in ("system", "instructions"):
        size = _collect(document.get(key), pieces, size, limit)
    turns = document.get("messages")
    if turns is None:
        turns = document.get("input")
    if isinstance(turns, str):
        size = _collect(turns, pieces, size, limit)
    elif isinstance(turns, list):
        last_user: Any = None
        for item in turns:
            if not isinstance(item, dict):
                continue
            role = item.get("role")
            if role in _INSTRUCTION_ROLES:
                size = _collect(item.get("content"), pieces, size, limit)
            elif role == "user":
                last_user = item
        if last_user is not None:
            _collect(last_user.get("content"), pieces, size, 2 * limit)
    text = "\n".join(pieces)
    if len(text) <= limit:
        return text
    # Instructions sit at the start or at the end of a long prompt: keep both ends.
    tail = limit // 4
    return text[: limit - tail - 1] + "\n" + text[-tail:]


def _collect(value: Any, pieces: list[str], size: int, limit: int) -> int:
    """Append the text of ``value`` (a string, a text part, or a list of them) to ``pieces``."""
    if size >= limit:
        return size
    if isinstance(value, str):
        if value:
            pieces.append(value)
            size += len(value) + 1
    elif isinstance(value, list):
        for part in value:
            size = _collect(part, pieces, size, limit)
    elif isinstance(value, dict):
        text = value.get("text")
        # Parts without text (images, files, tool results with nested content) are skipped.
        if isinstance(text, str) and value.get("type", "text") in (
            "text",
            "input_text",
        ):
            size = _collect(text, pieces, size, limit)
    return size
