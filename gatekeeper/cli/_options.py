"""Options several commands share, spelled once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def config_option(help: str) -> Decorator:
    """``--config FILE``: an existing TOML file (``None`` when not given)."""
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help=help,
    )


def json_option(help: str) -> Decorator:
    """``--json``: print the result as JSON (the command receives ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)
