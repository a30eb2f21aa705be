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


def syntax_tree(text: str, name: str) -> dict[str, Any]:
    """The parsed module (its ``package``, ``imports`` and ``rules``)."""
    engine = regorus.Engine()
    engine.add_policy(name, text)
    tree: dict[str, Any] = orjson.loads(engine.get_ast_as_json())[0]["ast"]
    return tree


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object of a syntax tree, parents before their children."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
