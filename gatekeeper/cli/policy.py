"""``gatekeeper policy …``: commands for policy authors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gatekeeper.errors import PolicyError
from gatekeeper.policy import EmbeddedEngine, format_results, load_policy, run_tests
from gatekeeper.policy.engine import decision_from_value

_POLICY_DIR = click.argument(
    "path", type=click.Path(exists=True, path_type=Path), default=Path("policies"), required=False
)


@click.group()
def policy() -> None:
    """Test and evaluate a policy directory or bundle."""


@policy.command("test")
@_POLICY_DIR
@click.option("-v", "--verbose", is_flag=True, help="List passing tests too.")
@click.option("-r", "--run", "pattern", default=None, help="Only tests whose name matches.")
def test_cmd(path: Path, verbose: bool, pattern: str | None) -> None:
    """Run the Rego unit tests (test_* rules); exit 2 if any fails, like `opa test`."""
    try:
        source = load_policy(path)
        results = run_tests(source, pattern)
    except PolicyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(format_results(results, verbose=verbose))
    if not results or any(r.outcome != "PASS" for r in results):
        sys.exit(2)


@policy.command("eval")
@_POLICY_DIR
@click.option(
    "--input",
    "input_file",
    type=click.File("rb"),
    required=True,
    help="Input document (JSON); - for stdin.",
)
@click.option("--decision", default="data.gatekeeper.decision", show_default=True)
def eval_cmd(path: Path, input_file: click.utils.LazyFile, decision: str) -> None:
    """Print the decision for one input document."""
    try:
        doc = json.loads(input_file.read())
        engine = EmbeddedEngine(load_policy(path), decision)
        value = decision_from_value(engine.evaluate(doc))
    except (PolicyError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(value.model_dump(mode="json"), indent=2, sort_keys=True))
