"""What demo-reasoner checks when a Responses client sends earlier output back as ``input``.

The real API, for a client that manages its own context (dialects.md §2.6, and the errors
quoted there), rejects:

- a reasoning item without ``summary`` ("Missing required parameter: 'input[N].summary'.");
- a reasoning item not followed by the item it led to ("… was provided without its required
  following item.");
- a message or function call that followed a reasoning item, sent without it ("Item 'msg_…' of
  type 'message' was provided without its required 'reasoning' item: 'rs_…'.");
- with ``store: false``, a reasoning item without its ``encrypted_content`` ("Item with id
  'rs_…' not found. Items are not persisted when `store` is set to false. …"), or with one that
  was altered ("The encrypted content … could not be verified.").

demo-reasoner keeps no state, so the link between an item and the reasoning item before it is
in the ids: an item that followed reasoning has an id ending in a tag only the demo can compute,
and the id of its reasoning item derives from it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from gatekeeper.offline.demo._reasoner import DEMO_SIGNING_KEY, unseal
from gatekeeper.offline.demo._wire import InvalidRequest

_FOLLOWER_PREFIXES = ("msg_", "fc_")


def follower_id(prefix: str, key: str, *, after_reasoning: bool) -> str:
    """The id of a message (``msg_``) or function call (``fc_``) item of a reply."""
    base = hashlib.sha256(f"{key}/{prefix}".encode()).hexdigest()[:16]
    return prefix + base + _tag(prefix, base, after_reasoning)


def reasoning_id(follower: str) -> str:
    """The id of the reasoning item that precedes the item ``follower``."""
    base = follower.split("_", 1)[1][:16]
    return "rs_" + hashlib.sha256(f"reasoning-of:{base}".encode()).hexdigest()[:24]


def required_reasoning(item_id: str) -> str | None:
    """The reasoning item id an item must be preceded by, if demo-reasoner made it so."""
    prefix = next((p for p in _FOLLOWER_PREFIXES if item_id.startswith(p)), None)
    rest = item_id[len(prefix) :] if prefix else ""
    if prefix is None or len(rest) != 24:
        return None
    base, tag = rest[:16], rest[16:]
    if not hmac.compare_digest(tag, _tag(prefix, base, True)):
        return None
    return reasoning_id(item_id)


def _tag(prefix: str, base: str, after_reasoning: bool) -> str:
    label = "after-reasoning" if after_reasoning else "alone"
    message = f"{prefix}{base}:{label}".encode()
    return hmac.new(DEMO_SIGNING_KEY, message, hashlib.sha256).hexdigest()[:8]


def check_replay(items: list[Any], store: bool) -> None:
    """Raise ``InvalidRequest`` as the real API would for replayed ``input`` items."""
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind, item_id = item.get("type"), item.get("id")
        if kind == "reasoning":
            _check_reasoning(items, position, item, store)
        elif kind in ("message", "function_call") and isinstance(item_id, str):
            needed = required_reasoning(item_id)
            before = items[position - 1] if position else None
            if needed is not None and not (
                isinstance(before, dict)
                and before.get("type") == "reasoning"
                and before.get("id") == needed
            ):
                raise InvalidRequest(
                    f"Item '{item_id}' of type '{kind}' was provided without its required "
                    f"'reasoning' item: '{needed}'.",
                    param="input",
                )


def _check_reasoning(items: list[Any], position: int, item: dict[str, Any], store: bool) -> None:
    item_id = item.get("id")
    if not isinstance(item.get("summary"), list):
        raise InvalidRequest(
            f"Missing required parameter: 'input[{position}].summary'.",
            param=f"input[{position}].summary",
            code="missing_required_parameter",
        )
    after = items[position + 1] if position + 1 < len(items) else None
    if not isinstance(after, dict) or after.get("type") not in ("message", "function_call"):
        raise InvalidRequest(
            f"Item '{item_id}' of type 'reasoning' was provided without its required "
            "following item.",
            param="input",
        )
    sealed = item.get("encrypted_content")
    if isinstance(sealed, str):
        if unseal(sealed) is None:
            shown = sealed[:4] + "..." + sealed[-4:] if len(sealed) > 8 else sealed
            raise InvalidRequest(f"The encrypted content {shown} could not be verified.")
    elif not store:
        raise InvalidRequest(
            f"Item with id '{item_id}' not found. Items are not persisted when `store` is set "
            "to false. Try again with `store` set to true, or remove this item from your input.",
            param="input",
        )
