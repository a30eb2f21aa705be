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
  at ``a.k`` (``a.k.l``: the path's known keys up to the first computed one). A key is known
  when it is a literal string, or (given the revision's data) a string computed from the data
  alone: an expression whose only variable is ``data`` and which calls only pure built-ins
  (``object.get(data.cfg, "window", "1h")``), evaluated once by an interpreter that holds the
  data and no policy, so a path a rule defines (which may read the input) stays computed;
- ``import input.a as x``: all of ``a``.

``input`` used as a value of its own (``x := input``, ``some k in input``, ``input[k]``), or a
``with`` modifier anywhere, and the policy gets the whole document (:func:`input_paths`
returns ``None``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import orjson
import regorus

from gatekeeper.policy.syntax import syntax_trees, walk

#: A node of the projection tree: field name -> subtree, where ``None`` keeps the whole value.
Tree = dict[str, "Tree | None"]


class _Whole(Exception):
    """The policy reads the input as a whole."""


def input_paths(
    modules: dict[str, str],
    trees: dict[str, dict[str, Any]] | None = None,
    data: dict[str, Any] | None = None,
) -> list[tuple[str, ...]] | None:
    """Every path of the input the modules may read (``None``: the whole document).
    ``trees``: the modules' parse, when the caller has it (``syntax_trees``); ``data``: the
    revision's data, to read the ``object.get`` keys computed from it alone (``_Folder``)."""
    paths: list[tuple[str, ...]] = []
    if trees is None:
        trees = syntax_trees(modules)
    folder = _Folder(data) if data is not None else None
    try:
        for name in sorted(modules):
            tree = trees[name]
            for declared in tree.get("imports", []):
                found = _chain(declared["refr"])
                if found is not None and found[0] == "input":
                    paths.append(_static(found[1]))
            fold = partial(folder.value, modules[name].encode()) if folder is not None else None
            paths.extend(_references(tree.get("rules", []), fold))
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


#: A key expression's value, if it depends on the policy's data alone (else ``None``).
Fold = Callable[[Any], str | None]


def _literal_keys(node: Any, fold: Fold | None = None) -> list[str]:
    """The leading known keys of an ``object.get`` key argument (all that is known of the
    path it reads; empty when the first key is computed from the input): literal strings, and
    strings computed from the policy's data alone when ``fold`` can compute them."""
    ((kind, body),) = node.items()
    items = body["items"] if kind == "Array" else [node]
    keys: list[str] = []
    for item in items:
        ((item_kind, item_body),) = item.items()
        if item_kind in ("String", "RawString"):
            keys.append(item_body["value"])
            continue
        folded = fold(item) if fold is not None and item_kind != "Array" else None
        if folded is None:
            break
        keys.append(folded)
    return keys


#: Built-in functions a data-only key expression may call: pure functions of their arguments.
_PURE_CALLS = {
    ("object", "get"),
    ("concat",),
    ("sprintf",),
    ("lower",),
    ("upper",),
    ("trim",),
    ("format_int",),
}
_BINDING_KINDS = {"ArrayCompr", "SetCompr", "ObjectCompr", "Every", "SomeVars", "SomeIn"}


def _data_only(node: Any) -> bool:
    """Whether an expression's value depends on the policy's data alone: its only variable
    is ``data`` (no input, no local, no import alias), and it calls only ``_PURE_CALLS``."""
    if isinstance(node, list):
        return all(_data_only(item) for item in node)
    if not isinstance(node, dict):
        return True
    if len(node) == 1:
        ((kind, body),) = node.items()
        if kind in _BINDING_KINDS:
            return False
        if kind == "Var":
            return isinstance(body, dict) and body.get("value") == "data"
        if kind == "Call" and isinstance(body, dict):
            function = _chain(body["fcn"])
            if function is None or _DYNAMIC in function[1]:
                return False
            if (function[0], *function[1]) not in _PURE_CALLS:
                return False
            return _data_only(body["params"])
    return all(_data_only(value) for value in node.values())


class _Folder:
    """Evaluates key expressions that depend on the policy's data alone, with an interpreter
    that holds the data and no policy: ``data.x`` is what the data says there, and a path a
    rule defines is undefined, so not folded (a rule may read the input)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._engine = regorus.Engine()
        self._engine.add_data_json(orjson.dumps(data).decode())

    def value(self, source: bytes, node: Any) -> str | None:
        """The string ``node`` (an expression of the module ``source``) evaluates to; None
        when it is not data-only, is undefined, fails or is not a string."""
        if not _data_only(node):
            return None
        ((_, body),) = node.items()
        span = body["span"]
        end = span["end"]
        if source[end : end + 1] in (b'"', b"`"):  # a span that ends with a string
            end += 1
        try:
            found = orjson.loads(
                self._engine.eval_query_as_json(source[span["start"] : end].decode())
            )
            values = [e["value"] for r in found.get("result", []) for e in r["expressions"]]
        except Exception:
            return None
        return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def _references(rules: Any, fold: Fold | None = None) -> Iterator[tuple[str, ...]]:
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
                        path += tuple(_literal_keys(params[1], fold))
                    consumed.update(target[2])
                    yield path
        elif kind in ("RefDot", "RefBrack"):
            found = _chain(node)
            if found is not None and found[0] == "input":
                consumed.update(found[2])
                yield _static(found[1])
        elif kind == "Var" and isinstance(body, dict) and body.get("value") == "input":
            raise _Whole
