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


def output_option(help: str, *, dest: str = "output", **extra: Any) -> Decorator:
    """``-o/--output FILE``: a file the command writes (a ``Path``; a directory is refused).
    ``extra`` goes to ``click.option`` (``required``, ``default``, ``multiple``, …)."""
    return click.option(
        "-o", "--output", dest, type=click.Path(dir_okay=False, path_type=Path), help=help, **extra
    )


def loop_option() -> Decorator:
    """``--loop auto|asyncio|uvloop``: the event loop uvicorn serves on (``server.loop``)."""
    return click.option(
        "--loop",
        type=click.Choice(["auto", "asyncio", "uvloop"]),
        default=None,
        help="Event loop: auto (uvloop), asyncio or uvloop (default: server.loop, auto). "
        "asyncio keeps a saturated worker's tail short (docs/operations.md, Overload).",
    )


def event_loop(name: str) -> str:
    """The loop uvicorn runs for ``server.loop`` = ``name``: ``auto`` is uvloop when it can be
    imported (uvicorn's own rule), else asyncio."""
    if name != "auto":
        return name
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
