"""OpenAI Responses (``POST /v1/responses``) and compatible servers (e.g. OpenRouter).

Reasoning is an output item of type ``reasoning`` (summary parts, raw ``reasoning_text``
content parts, ``encrypted_content``); the shaper (``_responses_shaper``) removes or rewrites it
per mode. Continuity (dialects.md §2.6): a client that manages its context itself sends earlier
output back as ``input``, and the API rejects a message or function call whose reasoning item is
missing, or a reasoning item without its ``encrypted_content`` when nothing is stored.
``restore_history`` puts the original items gatekeeper kept back in place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gatekeeper.dialects._common import (
    OpenAIDialect,
    object_items,
    opt_int,
    opt_list,
    opt_object,
    opt_str,
    request_facts,
    require_object,
)
from gatekeeper.dialects.base import RequestBodyError, RequestFacts
from gatekeeper.reasoning.responses import ResponsesShaper
from gatekeeper.reasoning.responses_items import input_keys, restore_input

__all__ = ["OpenAIResponses"]


class OpenAIResponses(OpenAIDialect):
    """The Responses dialect."""

    name: ClassVar[str] = "openai_responses"
    paths: ClassVar[tuple[str, ...]] = ("/v1/responses",)
    history_markers: ClassVar[tuple[bytes, ...]] = (b'"id"', b'"call_id"')
    shaper = ResponsesShaper

    def read_request(self, body: Any) -> RequestFacts:
        body = require_object(body)
        raw_input = body.get("input")
        if raw_input is None or isinstance(raw_input, str):
            items: list[dict[str, Any]] = []
            count = 0 if raw_input is None else 1
        elif isinstance(raw_input, list):
            items = object_items(raw_input, "input")
            count = len(items)
        else:
            raise RequestBodyError("'input' must be a string or an array of items")
        reasoning = opt_object(body, "reasoning")
        include = opt_list(body, "include") or []
        return request_facts(
            self,
            body,
            messages=count,
            prompt=[raw_input, opt_str(body, "instructions")],
            max_tokens=opt_int(body, "max_output_tokens"),
            has_tools=bool(opt_list(body, "tools")),
            has_tool_results=any(str(i.get("type", "")).endswith("_output") for i in items),
            reasoning_requested=(
                (reasoning is not None and reasoning.get("effort") != "none")
                or "reasoning.encrypted_content" in include
            ),
        )

    def history_keys(self, body: Any) -> list[str]:
        return input_keys(body)

    def restore_history(self, body: Any, found: dict[str, Any]) -> tuple[Any, int]:
        return restore_input(body, found)
