"""Options several commands share, spelled once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from gatekeeper.settings import ServerSettings

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


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--host``, ``--port`` and ``--loop auto|asyncio|uvloop``: where a server listens and
    the event loop uvicorn serves on, each ``None`` when not given (see :func:`listen_on`)."""
    command = click.option(
        "--loop",
        type=click.Choice(["auto", "asyncio", "uvloop"]),
        default=None,
        help="Event loop: auto (uvloop), asyncio or uvloop (default: server.loop, auto). "
        "asyncio keeps a saturated worker's tail short (docs/operations.md, Overload).",
    )(command)
    command = click.option(
        "--port", type=int, default=None, help="Listen port (default: server.port, 8000)."
    )(command)
    return click.option(
        "--host", default=None, help="Listen address (default: server.host, 127.0.0.1)."
    )(command)


def listen_on(server: ServerSettings, host: str | None, port: int | None) -> tuple[str, int, str]:
    """The address, port and event loop to serve on: ``--host`` and ``--port`` where given,
    else ``server.host`` and ``server.port``; ``server.loop`` (which ``--loop`` overrides when
    the settings are loaded) made concrete by :func:`event_loop`."""
    return host or server.host, server.port if port is None else port, event_loop(server.loop)


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
