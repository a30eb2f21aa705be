"""The contract field tables of docs/policy-authoring.md, generated from the pydantic models.

Run ``python -m tests.policy.doc_tables`` to rewrite them after a contract change;
``tests/policy/test_docs.py`` fails while the page is out of date. Meanings come from the
models' field descriptions, else from the tables of docs/contracts.md.
"""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gatekeeper.contract import Decision, Input

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "policy-authoring.md"
MARKERS = {
    "input": ("<!-- input-fields:start -->", "<!-- input-fields:end -->"),
    "decision": ("<!-- decision-fields:start -->", "<!-- decision-fields:end -->"),
}


def _meanings() -> dict[str, str]:
    text = (DOCS / "contracts.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| [^|]* \| (.*) \|$", text, re.M)
    return {path: meaning for path, meaning in rows}


def _type(annotation: Any) -> tuple[str, type[BaseModel] | None, bool]:
    """(rendered type, nested model, is a list of that model)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text, model, many = _type(inner[0])
        return (text + "?" if len(inner) < len(args) else text), model, many
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args), None, False
    if origin is list:
        text, model, _ = _type(args[0])
        return f"[{text}]", model, model is not None
    if origin is dict:
        return "object", None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object", annotation, False
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation), None, False
    names = {str: "string", int: "int", float: "number", bool: "bool"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))), None, False


def _default(info: Any) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, BaseModel):
        return "(object)"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{json.dumps(value)}`"


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    meanings = _meanings()
    out: list[tuple[str, str, str, str]] = []
    for name, info in model.model_fields.items():
        path = prefix + name
        text, nested, many = _type(info.annotation)
        if nested is not None:
            head = path + ("[]" if many else "")
            if many:
                out.append((head, "array", _default(info), meanings.get(head, "")))
            out.extend(rows(nested, head + "."))
            continue
        meaning = info.description or meanings.get(path, "")
        out.append((path, text, _default(info), meaning))
    return out


def table(model: type[BaseModel]) -> str:
    lines = ["| Field | Type | Default | Meaning |", "|---|---|---|---|"]
    lines += [f"| `{p}` | {t} | {d} | {m} |" for p, t, d, m in rows(model)]
    return "\n".join(lines)


def render(page: str) -> str:
    """``page`` with both tables regenerated."""
    for key, model in (("input", Input), ("decision", Decision)):
        start, end = MARKERS[key]
        before, _, rest = page.partition(start)
        _, _, after = rest.partition(end)
        page = f"{before}{start}\n{table(model)}\n{end}{after}"
    return page


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text()))
    print(f"rewrote the field tables of {PAGE}")
