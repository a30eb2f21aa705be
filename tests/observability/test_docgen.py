"""docs/configuration.md is generated from the settings model and must not go stale."""

from __future__ import annotations

from pydantic import BaseModel

from gatekeeper.cli import docgen
from gatekeeper.settings import Settings


def test_committed_configuration_page_is_current() -> None:
    committed = docgen.PAGE.read_text(encoding="utf-8") if docgen.PAGE.exists() else ""
    assert committed == docgen.render(), (
        "docs/configuration.md is stale: run `python -m gatekeeper.cli.docgen --write`"
    )


def leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every setting's path, nested sections walked."""
    out: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(leaves(annotation, (*path, name)))
        else:
            out.append((*path, name))
    return out


def test_every_setting_is_documented_with_its_environment_variable() -> None:
    page = docgen.render()
    settings = leaves(Settings)
    assert ("policy", "opa", "url") in settings  # nested sections are walked
    for path in settings:
        assert f"`[{'.'.join(path[:-1])}]`" in page
        assert f"`GATEKEEPER_{'__'.join(p.upper() for p in path)}`" in page


def test_check_mode_agrees(capsys: object) -> None:
    assert docgen.main(["--check"]) == 0
