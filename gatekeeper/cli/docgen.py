"""Generate ``docs/configuration.md`` from the settings model.

``python -m gatekeeper.cli.docgen`` prints the page; ``--write`` updates ``docs/configuration.md``;
``--check`` exits non-zero when the committed page differs (a test runs the same comparison).
Every section, setting, type, default, environment variable and description comes from
``gatekeeper.settings``, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gatekeeper.settings import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

_HEADER = """\
# Configuration reference

<!-- Generated from gatekeeper/settings.py by `python -m gatekeeper.cli.docgen --write`.
     Do not edit by hand: tests/observability/test_docgen.py fails when this page is stale. -->

gatekeeper reads one settings model, validated once at start-up (a bad value stops the process
with every problem listed). Values come from, highest precedence first:

1. keyword arguments (`Settings.load(path, quota={"storage": ...})`, or the CLI's own options);
2. environment variables: `GATEKEEPER_<SECTION>__<NAME>`, e.g. `GATEKEEPER_QUOTA__STORAGE`
   (lists and tables as JSON: `GATEKEEPER_NETWORK__TRUSTED_PROXIES='["10.0.0.0/8"]'`);
3. a TOML file: `--config FILE`, `Settings.load(FILE)` or `GATEKEEPER_CONFIG=FILE`, with one
   `[section]` table per section below; relative paths in it resolve against its directory;
4. the defaults below.

`examples/demo/gatekeeper.toml` is a complete, commented file to copy.
"""


def render() -> str:
    """The whole page, as committed."""
    parts = [_HEADER]
    for name, field in Settings.model_fields.items():
        model = _model_of(field)
        if model is not None:
            parts.extend(_sections((name,), model))
    return "\n".join(parts)


def _sections(path: tuple[str, ...], model: type[BaseModel]) -> list[str]:
    """The section's table, then one for each nested section (e.g. ``[policy.opa]``)."""
    out = [_section(path, model)]
    for name, field in model.model_fields.items():
        nested = _model_of(field)
        if nested is not None:
            out.extend(_sections((*path, name), nested))
    return out


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _section(path: tuple[str, ...], model: type[BaseModel]) -> str:
    summary = " ".join((model.__doc__ or "").split())
    prefix = "GATEKEEPER_" + "__".join(p.upper() for p in path)
    lines = [
        f"{'#' * (len(path) + 1)} `[{'.'.join(path)}]`",
        "",
        summary,
        "",
        "| Setting | Type | Default | Environment variable | Description |",
        "|---|---|---|---|---|",
    ]
    for field_name, field in model.model_fields.items():
        if _model_of(field) is not None:
            continue  # a nested section, with a table of its own below
        env = f"{prefix}__{field_name.upper()}"
        description = " ".join((field.description or "").split()) or "(no description)"
        lines.append(
            f"| `{field_name}` | {_type(field.annotation)} | {_default(field)} | `{env}` "
            f"| {_escape(description)} |"
        )
    return "\n".join(lines) + "\n"


def _type(annotation: Any) -> str:
    return _escape(_type_text(annotation))


def _type_text(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin is typing.Literal:
        return " or ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a!r}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        text = " or ".join(_type_text(a) for a in present)
        return f"{text} (optional)" if len(present) < len(args) else text
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {_type_text(args[1])}" if len(args) == 2 else "table"
    if annotation is type(None):
        return "none"
    if annotation is SecretStr:
        return "secret string"
    if annotation is Path:
        return "path"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, Path):
        return f'`"{value.as_posix()}"`'
    if isinstance(value, list | tuple):
        inner = ", ".join(f'"{v}"' if isinstance(v, str) else repr(v) for v in value)
        return f"`[{inner}]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value!r}`"
    return f"`{value!r}`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gatekeeper.cli.docgen",
        description="Print (or write, or check) docs/configuration.md from the settings model.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {PAGE}")
    group.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    page = render()
    if args.write:
        PAGE.write_text(page, encoding="utf-8")
        return 0
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE} is stale: run python -m gatekeeper.cli.docgen --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
