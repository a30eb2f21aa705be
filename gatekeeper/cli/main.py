"""``gatekeeper``: run the demo, work with policies and GeoIP databases."""

from __future__ import annotations

from pathlib import Path

import click

from gatekeeper import __version__
from gatekeeper.cli.audit import audit
from gatekeeper.cli.policy import policy
from gatekeeper.cli.simulate import simulate_command
from gatekeeper.cli.subjects import subjects
from gatekeeper.network.cli import geoip_cli
from gatekeeper.proxy.cli import proxy_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--host", default=None, help="Listen address (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default: server.port, 8000).")
def demo(config: Path, host: str | None, port: int | None) -> None:
    """Serve demo-reasoner (three API dialects) behind gatekeeper's default policies."""
    import uvicorn

    from gatekeeper.demo.app import create_demo_app, demo_banner
    from gatekeeper.settings import Settings

    settings = Settings.load(config)
    host = host or settings.server.host
    port = port if port is not None else settings.server.port
    app = create_demo_app(config)
    click.echo(demo_banner(host, port, settings))
    # gatekeeper resolves the client address itself (trusted proxies); uvicorn must not rewrite
    # the peer from X-Forwarded-For first.
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on", proxy_headers=False)


cli.add_command(policy)
cli.add_command(geoip_cli)
cli.add_command(proxy_command)
cli.add_command(audit)
cli.add_command(simulate_command)
cli.add_command(subjects)


def main() -> None:
    cli(prog_name="gatekeeper")
