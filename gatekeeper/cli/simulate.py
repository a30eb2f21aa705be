"""``gatekeeper simulate``: replay a population with extraction campaigns against a gateway."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
import orjson

from gatekeeper.cli._options import output_option
from gatekeeper.errors import ConfigurationError


@click.command("simulate")
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--target",
    default=None,
    metavar="URL",
    help="A running gateway (policy pack under test); default: an in-process demo gateway "
    "with a simulated clock, run once with the scenario's baseline and once with its pack.",
)
@click.option(
    "--baseline-target",
    default=None,
    metavar="URL",
    help="With --target: a second gateway running the per-key-limits baseline.",
)
@output_option(
    "Write the report: .json or .html by suffix (repeatable).", dest="outputs", multiple=True
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--hours", type=float, default=None, help="Override the simulated duration.")
@click.option(
    "--speed",
    type=float,
    default=60.0,
    show_default=True,
    help="With --target: simulated seconds per real second.",
)
@click.option(
    "--concurrency",
    type=int,
    default=32,
    show_default=True,
    help="With --target: requests in flight.",
)
@click.option(
    "--write-subjects",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the simulated accounts as a subjects file (JSON) for a --target gateway, and exit.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show done/total, elapsed time and time left on stderr (default: on a terminal; "
    "a summary line with the elapsed time is printed either way).",
)
def simulate_command(
    scenario: Path,
    target: str | None,
    baseline_target: str | None,
    outputs: tuple[Path, ...],
    seed: int | None,
    hours: float | None,
    speed: float,
    concurrency: int,
    write_subjects: Path | None,
    progress: bool | None,
) -> None:
    """Measure how much reasoning extraction campaigns harvest, with the pack and without.

    Prints reasoning tokens harvested per simulated hour by each campaign under the baseline
    (per-key rate limits only) and under the pack, and the share of benign requests refused or
    degraded. See docs/distillation.md.
    """
    from gatekeeper.offline.simulate import Population, Scenario, render_html, render_text, simulate

    try:
        loaded = Scenario.load(scenario, seed=seed, hours=hours)
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if write_subjects is not None:
        population = Population(loaded)
        write_subjects.write_bytes(
            orjson.dumps(population.subjects_document(), option=orjson.OPT_INDENT_2)
        )
        click.echo(f"wrote {len(population.accounts)} subjects to {write_subjects}")
        return

    from gatekeeper.cli.progress import ProgressLine

    line = ProgressLine("requests", enabled=progress)
    try:
        report = asyncio.run(
            simulate(
                loaded,
                target=target,
                baseline_target=baseline_target,
                speed=speed,
                concurrency=concurrency,
                progress=line,
            )
        )
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    line.finish()
    click.echo(render_text(report))
    for path in outputs:
        if path.suffix == ".html":
            path.write_text(render_html(report), encoding="utf-8")
        else:
            path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        click.echo(f"report written to {path}")
