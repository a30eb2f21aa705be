"""``gatekeeper geoip``: build a GeoIP database from YAML, and look addresses up in one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from gatekeeper.cli._options import json_option, output_option
from gatekeeper.network.geoip import GeoDatabaseError, GeoLocator


@click.group("geoip")
def geoip_cli() -> None:
    """Build and query MaxMind-format GeoIP databases."""


@geoip_cli.command("build")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@output_option("Where to write the database [default: SOURCE with the suffix .mmdb].")
def build_command(source: Path, output: Path | None) -> None:
    """Write a .mmdb database from the YAML file SOURCE."""
    from gatekeeper.network.builder import build_database

    target = output if output is not None else source.with_suffix(".mmdb")
    try:
        count = build_database(source, target)
    except GeoDatabaseError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {target} ({count} networks)")


@geoip_cli.command("lookup")
@click.argument("database", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ip")
@json_option("Print the facts as one JSON object.")
def lookup_command(database: Path, ip: str, as_json: bool) -> None:
    """Print what DATABASE says about the address IP."""
    try:
        with GeoLocator(database, cache_size=0) as geo:
            facts = geo.lookup(ip)
    except GeoDatabaseError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="IP") from exc
    values = dataclasses.asdict(facts)
    if values.pop("lookup_error"):
        raise click.ClickException(f"the database failed to look {ip} up")
    if as_json:
        click.echo(json.dumps(values, sort_keys=True))
        return
    width = max(len(name) for name in values)
    for name, value in values.items():
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else value
        click.echo(f"{name.ljust(width)}  {shown}")
