"""docs/contracts.md documents every field of both contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gatekeeper.contract import Decision, Input

DOC = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            paths.extend(field_paths(nested[0], f"{prefix}{name}."))
        else:
            paths.append(prefix + name)
    return paths


@pytest.mark.parametrize("path", field_paths(Input) + field_paths(Decision))
def test_field_is_documented(path: str) -> None:
    head, _, rest = path.partition(".")
    spellings = {f"`{path}`", f"`{head}[].{rest}`"}
    assert any(s in DOC for s in spellings), f"{path} is not documented in docs/contracts.md"
