"""Rego syntax trees, as regorus parses them (``Engine.get_ast_as_json``).

Read by the rewrite for regorus's VM (``vm.py``) and by the input-path analysis
(``projection.py``). Spans are byte offsets into the module's UTF-8 text; a span that ends
with a string leaves its closing quote out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import regorus


def syntax_trees(modules: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each module's parse (its ``package``, ``imports`` and ``rules``), by module name: one
    engine parses them all, in one call (about half the time of one engine per module)."""
    engine = regorus.Engine()
    for name, text in sorted(modules.items()):
        engine.add_policy(name, text)
    parsed: list[dict[str, Any]] = orjson.loads(engine.get_ast_as_json())
    return {module["source"]["file"]: module["ast"] for module in parsed}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object of a syntax tree, parents before their children."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
