"""regorus's compiled evaluator (``regorus.Program`` + ``regorus.Rvm``), made safe to use.

regorus 0.13 compiles Rego to a register VM that evaluates the default pack about three times
faster than its tree-walking interpreter. It also decides some constructs differently from the
interpreter and from OPA (reproductions in docs/performance.md):

1. a rule with ``else``: when an earlier body fails inside a loop (``some x in``, ``xs[_]``, an
   unbound index), at an undefined ``x := …``, or with an undefined head value, the VM yields
   *undefined* instead of trying the ``else``;
2. ``every``: a member for which the body is undefined does not make ``every`` fail (this one
   allows what the policy refuses).

So the VM never sees the modules as written. :func:`prepare` rewrites every ``else`` chain into
plain rules the VM evaluates correctly (each link becomes a rule of its own, and the chain picks
the first link that is defined)::

    l := V0 if { B0 } else := V1 if { B1 } else := V2

becomes::

    __gk_e0_0_0 := V0 if { B0 }
    __gk_e0_0_1 := V1 if { B1 }
    __gk_e0_0_2 := V2
    __gk_e0_0_0_def if { _ = __gk_e0_0_0 }
    __gk_e0_0_1_def if { _ = __gk_e0_0_1 }
    l := __gk_e0_0_0
    l := __gk_e0_0_1 if { not __gk_e0_0_0_def }
    l := __gk_e0_0_2 if { not __gk_e0_0_0_def; not __gk_e0_0_1_def }

(functions the same way, with their arguments), and declines policies it cannot make safe:
``every`` anywhere, an ``else`` on a rule with a reference head (``a.b := …``) or on a function
with an argument that is not a plain variable or scalar. A declined policy is evaluated by the
interpreter; :class:`VmPlan` says why.

The embedded engine adds two checks of its own (docs/policy-authoring.md, "Evaluators"): before
a revision uses the VM, the VM and the interpreter must decide every conformance case alike;
and while it serves, every ``verify_every``-th decision is also evaluated by the interpreter,
whose decision wins and switches the revision to the interpreter if they differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import regorus

from gatekeeper.policy.syntax import syntax_trees, walk

_SCALARS = {"String", "RawString", "Number", "Bool", "Null"}


@dataclass(frozen=True)
class VmPlan:
    """A policy prepared for the VM: the compiled program (serialized), or why there is none.

    regorus programs and VMs are bound to the thread that created them (PyO3 ``unsendable``),
    so a plan carries the program as bytes, and each thread loads its own :class:`Vm`.
    """

    program: bytes | None
    reason: str = ""
    #: The modules the VM was compiled from (``else`` chains rewritten).
    modules: tuple[tuple[str, str], ...] = ()


def prepare(
    modules: dict[str, str],
    data: dict[str, Any],
    decision_rule: str,
    trees: dict[str, dict[str, Any]] | None = None,
) -> VmPlan:
    """Rewrite ``modules`` for the VM and compile them; never raises for a policy problem.
    ``trees``: the modules' parse, when the caller has it (``syntax_trees``)."""
    if trees is None:
        trees = syntax_trees(modules)
    rewritten: list[tuple[str, str]] = []
    for index, (name, text) in enumerate(sorted(modules.items())):
        try:
            rewritten.append((name, desugar(text, trees[name], index)))
        except Unsupported as exc:
            return VmPlan(None, f"{name}: {exc}")
    try:
        program = regorus.Program.compile_from_modules(
            orjson.dumps(data).decode(), rewritten, [decision_rule]
        )
    except Exception as exc:  # regorus raises RuntimeError with the compiler's message
        first = str(exc).strip().splitlines()[:3]
        return VmPlan(None, "the VM does not compile it: " + " ".join(first))
    return VmPlan(program.serialize_binary(), "", tuple(rewritten))


class Vm:
    """A VM loaded with a plan's program and the policy data, for the thread that made it."""

    __slots__ = ("_program", "_vm")

    def __init__(self, plan: VmPlan, data_json: str) -> None:
        if plan.program is None:
            raise ValueError(f"no program: {plan.reason}")
        self._program, _ = regorus.Program.deserialize_binary(plan.program)
        self._vm = regorus.Rvm()
        self._vm.load_program(self._program)
        self._vm.set_data_json(data_json)

    def evaluate_json(self, input_json: str) -> str:
        """The decision rule's value as JSON (``"<undefined>"`` when undefined)."""
        self._vm.set_input_json(input_json)
        result: str = self._vm.execute()
        return result


class Unsupported(Exception):
    """A construct the rewrite cannot make safe for the VM."""


def desugar(text: str, tree: dict[str, Any], index: int) -> str:
    """``text`` (parsed as ``tree``) with every ``else`` chain rewritten into plain rules
    (module docstring); ``index`` keeps its helper rules apart from other modules'."""
    source = text.encode()
    for node in walk(tree):
        if "Every" in node:
            line = node["Every"]["span"]["line"]
            raise Unsupported(f"line {line}: `every` (the VM can let it pass when it fails)")
    edits: list[tuple[int, int, str]] = []
    for number, rule in enumerate(tree["rules"]):
        spec = rule.get("Spec")
        if spec is None or not any(body["is_else"] for body in spec["bodies"]):
            continue
        replacement = _desugar_rule(source, spec, f"__gk_e{index}_{number}")
        edits.append((spec["span"]["start"], _end(source, spec["span"]), replacement))
    for start, end, replacement in sorted(edits, reverse=True):
        source = source[:start] + replacement.encode() + source[end:]
    return source.decode()


def _end(source: bytes, span: dict[str, Any]) -> int:
    # A span that ends with a string leaves its closing quote out.
    end: int = span["end"]
    return end + 1 if source[end : end + 1] in (b'"', b"`") else end


def _text(source: bytes, span: dict[str, Any]) -> str:
    return source[span["start"] : _end(source, span)].decode()


def _desugar_rule(source: bytes, spec: dict[str, Any], prefix: str) -> str:
    head = spec["head"]
    bodies = spec["bodies"]
    (kind,) = head.keys()
    if kind not in {"Compr", "Func"}:
        raise Unsupported(f"line {spec['span']['line']}: `else` on a {kind} rule")
    info = head[kind]
    ref = info["refr"]
    if "Var" not in ref:
        raise Unsupported(f"line {spec['span']['line']}: `else` on a rule with a reference head")
    rule_name = ref["Var"]["value"]
    head_text = source[spec["span"]["start"] : bodies[0]["span"]["start"]].decode()
    params = ""
    if kind == "Func":
        for arg in info["args"]:
            (arg_kind,) = arg.keys()
            if arg_kind not in _SCALARS and not (arg_kind == "Var" and arg["Var"]["value"] != "_"):
                raise Unsupported(
                    f"line {spec['span']['line']}: `else` on a function with a pattern argument"
                )
        # The arguments as written: from the head's first "(" to its match.
        params = head_text[head_text.index("(") :]
        params = params[: _closing_paren(params) + 1]
    # Each link: its value text and its query text.
    links: list[tuple[str, str]] = []
    links.append((_value(head_text, info["assign"]), _query(source, bodies[0])))
    for body in bodies[1:]:
        query = body["query"]
        value_end = query["span"]["start"] if query["stmts"] else _end(source, body["span"])
        value_text = source[body["span"]["start"] : value_end].decode()
        value_text = value_text.removeprefix("else").strip()
        value_text = value_text.removesuffix("if").strip() if query["stmts"] else value_text
        if body["assign"] is None:
            value = "true"
        else:
            value = value_text.removeprefix(":=").removeprefix("=").strip()
        links.append((value, _query(source, body)))
    out: list[str] = []
    call = params  # the arguments, passed on as they were received
    for i, (value, query) in enumerate(links):
        condition = f" if {{\n{query}\n}}" if query else ""
        out.append(f"{prefix}_{i}{params} := (\n{value}\n){condition}")
        out.append(f"{prefix}_{i}_def{params} if {{ _ = {prefix}_{i}{call} }}")
    for i in range(len(links)):
        guards = "; ".join(f"not {prefix}_{j}_def{call}" for j in range(i))
        condition = f" if {{ {guards} }}" if guards else ""
        out.append(f"{rule_name}{params} := {prefix}_{i}{call}{condition}")
    return "\n".join(out)


def _code(text: str) -> Iterator[tuple[int, str, int]]:
    """``(position, character, bracket depth after it)`` for each character outside strings."""
    depth = 0
    quote = ""
    escaped = False
    for position, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in '"`':
            quote = char
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        yield position, char, depth


def _closing_paren(text: str) -> int:
    for position, char, depth in _code(text):
        if char == ")" and depth == 0:
            return position
    raise Unsupported("unbalanced function head")


def _value(head_text: str, assign: dict[str, Any] | None) -> str:
    """The value of a rule head (``true`` when the head has none)."""
    if assign is None:
        return "true"
    op = ":=" if assign["op"] == "ColEq" else "="
    # The value follows the first assignment operator outside brackets and strings.
    for position, _, depth in _code(head_text):
        if depth == 0 and head_text.startswith(op, position):
            return head_text[position + len(op) :].strip()
    raise Unsupported(f"no {op} in the head {head_text!r}")


def _query(source: bytes, body: dict[str, Any]) -> str:
    """A body's statements, without braces (empty for a link without a body)."""
    query = body["query"]
    if not query["stmts"]:
        return ""
    text = _text(source, query["span"]).strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text.strip()
