"""The part of the input document a policy reads, found in its modules' syntax trees.

regorus parses the whole input document on every evaluation (about 0.3 µs per field, some 40%
of a VM evaluation of the default pack), and gatekeeper's input carries many fields a given
policy never looks at. :func:`input_paths` lists what the modules can read, and
:func:`project` keeps only that, so the engine hands regorus a smaller document. The projection
is exact: every reference to ``input`` evaluates to the same value on it.

What counts as read, conservatively:

- ``input.a.b["c"]``: the whole subtree at ``a.b.c``; a reference with a computed part
  (``input.a[x].b``) reads the whole subtree before it (``a``);
- ``object.get(input.a, "k", d)`` and ``object.get(input.a, ["k", "l", x], d)``: the subtree
  at ``a.k`` (``a.k.l``: the path's literal keys up to the first computed one);
- ``import input.a as x``: all of ``a``.

``input`` used as a value of its own (``x := input``, ``some k in input``, ``input[k]``), or a
``with`` modifier anywhere, and the policy gets the whole document (:func:`input_paths`
returns ``None``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from gatekeeper.policy.syntax import syntax_trees, walk

#: A node of the projection tree: field name -> subtree, where ``None`` keeps the whole value.
Tree = dict[str, "Tree | None"]


class _Whole(Exception):
    """The policy reads the input as a whole."""


def input_paths(
    modules: dict[str, str], trees: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, ...]] | None:
    """Every path of the input the modules may read (``None``: the whole document).
    ``trees``: the modules' parse, when the caller has it (``syntax_trees``)."""
    paths: list[tuple[str, ...]] = []
    if trees is None:
        trees = syntax_trees(modules)
    try:
        for name in sorted(modules):
            tree = trees[name]
            for declared in tree.get("imports", []):
                found = _chain(declared["refr"])
                if found is not None and found[0] == "input":
                    paths.append(_static(found[1]))
            paths.extend(_references(tree.get("rules", [])))
    except _Whole:
        return None
    if any(path == () for path in paths):
        return None
    return sorted(set(paths))


def projection_tree(paths: list[tuple[str, ...]]) -> Tree:
    """``paths`` as a tree for :func:`project`; a path keeps everything under it."""
    root: Tree = {}
    for path in sorted(paths, key=len):
        node: Tree | None = root
        for i, field in enumerate(path):
            assert node is not None
            if field in node and node[field] is None:
                break  # a shorter path already keeps all of it
            if i == len(path) - 1:
                node[field] = None
            else:
                node = node.setdefault(field, {})
    return root


def project(doc: dict[str, Any], tree: Tree) -> dict[str, Any]:
    """The part of ``doc`` under ``tree``: what is missing stays missing, and a value that is
    not an object is kept whole (a reference into it is undefined either way)."""
    out: dict[str, Any] = {}
    for field, sub in tree.items():
        if field in doc:
            value = doc[field]
            if sub is None or not isinstance(value, dict):
                out[field] = value
            else:
                out[field] = project(value, sub)
    return out


def projector(tree: Tree) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """:func:`project` for one ``tree``, as a function of the document alone: each node's
    fields written out as straight-line code (a function per node, so no depth of tree nests
    blocks too deep), built once per policy revision. Twice as fast as walking the tree for
    every request, with exactly :func:`project`'s result."""
    lines: list[str] = []
    names = itertools.count()

    def emit(node: Tree) -> str:
        name = f"p{next(names)}"
        body = [f"def {name}(doc):", "    out = {}"]
        for field, sub in node.items():
            key = repr(field)  # a str: its repr is a string literal, whatever it holds
            body.append(f"    if {key} in doc:")
            body.append(f"        value = doc[{key}]")
            if sub is None:
                body.append(f"        out[{key}] = value")
            else:
                inner = emit(sub)
                body.append(
                    f"        out[{key}] = {inner}(value) if isinstance(value, dict) else value"
                )
        body.append("    return out")
        lines.extend(body)
        return name

    root = emit(tree)
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<input projection>", "exec"), namespace)
    function: Callable[[dict[str, Any]], dict[str, Any]] = namespace[root]
    return function


_DYNAMIC = object()


def _chain(node: Any) -> tuple[str, list[Any], list[int]] | None:
    """A reference's root name, its parts from the root (``_DYNAMIC`` for a computed one) and
    the ids of its nodes; ``None`` if it is not a reference rooted at a name."""
    parts: list[Any] = []
    ids: list[int] = []
    while isinstance(node, dict) and len(node) == 1:
        ids.append(id(node))
        ((kind, body),) = node.items()
        if kind == "RefDot":
            parts.append(body["field"][1])
        elif kind == "RefBrack":
            index = body["index"]
            literal = index.get("String") or index.get("RawString")
            parts.append(literal["value"] if literal is not None else _DYNAMIC)
        elif kind == "Var":
            return body["value"], parts[::-1], ids
        else:
            return None
        node = body["refr"]
    return None


def _static(parts: list[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for part in parts:
        if part is _DYNAMIC:
            break
        out.append(part)
    return tuple(out)


def _literal_keys(node: Any) -> list[str]:
    """The leading literal keys of an ``object.get`` key argument (all that is known of the
    path it reads; empty when the key is computed)."""
    ((kind, body),) = node.items()
    if kind in ("String", "RawString"):
        return [body["value"]]
    keys: list[str] = []
    if kind == "Array":
        for item in body["items"]:
            ((item_kind, item_body),) = item.items()
            if item_kind not in ("String", "RawString"):
                break
            keys.append(item_body["value"])
    return keys


def _references(rules: Any) -> Iterator[tuple[str, ...]]:
    consumed: set[int] = set()
    for node in walk(rules):
        if id(node) in consumed:
            continue
        if node.get("with_mods"):
            raise _Whole
        if len(node) != 1:
            continue
        ((kind, body),) = node.items()
        if kind == "Call" and isinstance(body, dict):
            function = _chain(body["fcn"])
            params = body["params"]
            if function is not None and function[:2] == ("object", ["get"]) and len(params) == 3:
                target = _chain(params[0])
                if target is not None and target[0] == "input":
                    path = _static(target[1])
                    if len(path) == len(target[1]):  # no computed part before the keys
                        path += tuple(_literal_keys(params[1]))
                    consumed.update(target[2])
                    yield path
        elif kind in ("RefDot", "RefBrack"):
            found = _chain(node)
            if found is not None and found[0] == "input":
                consumed.update(found[2])
                yield _static(found[1])
        elif kind == "Var" and isinstance(body, dict) and body.get("value") == "input":
            raise _Whole
