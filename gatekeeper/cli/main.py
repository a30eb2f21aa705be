"""``gatekeeper``: run the demo, work with policies, GeoIP databases and shared intelligence."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from gatekeeper._version import __version__
from gatekeeper.cli._options import listen_on, server_options
from gatekeeper.errors import ConfigurationError

# Subcommand groups, imported only when invoked (or listed by --help): each pulls in its own
# stack (the proxy its HTTP server, audit its sinks), and `gatekeeper policy test` should not
# wait for the others' imports.
_LAZY = {
    "audit": "gatekeeper.cli.audit:audit",
    "geoip": "gatekeeper.cli.geoip:geoip_cli",
    "intel": "gatekeeper.cli.intel:intel",
    "policy": "gatekeeper.cli.policy:policy",
    "proxy": "gatekeeper.cli.proxy:proxy_command",
    "simulate": "gatekeeper.cli.simulate:simulate_command",
    "subjects": "gatekeeper.cli.subjects:subjects",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            module, _, attr = _LAZY[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


class ConfigurationFailure(click.ClickException):
    """A configuration error, printed as ``Error: ...`` without a traceback; exit status 2."""

    exit_code = 2


class _Commands(_LazyGroup):
    """The root command: a ``ConfigurationError`` from any command is a clear message and exit
    status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            raise ConfigurationFailure(str(exc)) from exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gatekeeper")
def cli() -> None:
    """Policy-as-code access control and rate limiting for AI model APIs."""


@cli.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("examples/demo/gatekeeper.toml"),
    show_default=True,
    help="The demo's TOML configuration.",
)
@server_options
def demo(config: Path, host: str | None, port: int | None, loop: str | None) -> None:
    """Serve demo-reasoner (three API dialects) behind gatekeeper's default policies."""
    import uvicorn

    from gatekeeper.offline.demo.app import create_demo_app, demo_banner
    from gatekeeper.settings import Settings

    settings = Settings.load(config, **({"server": {"loop": loop}} if loop else {}))
    host, port, loop_name = listen_on(settings.server, host, port)
    app = create_demo_app(config)
    click.echo(demo_banner(host, port, settings, loop_name))
    # gatekeeper resolves the client address itself (trusted proxies); uvicorn must not rewrite
    # the peer from X-Forwarded-For first.
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=loop_name,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,
    )


def main() -> None:
    cli(prog_name="gatekeeper")
