"""``gatekeeper policy …``: commands for policy authors (docs/policy-authoring.md)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

import click

from gatekeeper.errors import PolicyError
from gatekeeper.policy import EmbeddedEngine, bundle_bytes, format_results, load_policy, run_tests
from gatekeeper.policy.check import check_source, root_violations
from gatekeeper.policy.embedded import compile_source
from gatekeeper.policy.engine import decision_from_value
from gatekeeper.policy.replay import replay_logs

_POLICY_DIR = click.argument(
    "path", type=click.Path(exists=True, path_type=Path), default=Path("policies"), required=False
)
_DECISION = click.option(
    "--decision",
    default="data.gatekeeper.decision",
    show_default=True,
    help="The rule gatekeeper queries.",
)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
def policy() -> None:
    """Test, check, evaluate, bundle and replay a policy directory or bundle."""


@policy.command("test")
@_POLICY_DIR
@click.option("-v", "--verbose", is_flag=True, help="List passing tests too.")
@click.option("-r", "--run", "pattern", default=None, help="Only tests whose name matches.")
@click.option(
    "--engine",
    type=click.Choice(["embedded", "opa"]),
    default="embedded",
    show_default=True,
    help="Run the tests in-process (regorus) or with `opa test` (needs opa on PATH).",
)
def test_cmd(path: Path, verbose: bool, pattern: str | None, engine: str) -> None:
    """Run the Rego unit tests (test_* rules); exit 2 if any fails, like `opa test`."""
    if engine == "opa":
        opa = shutil.which("opa")
        if opa is None:
            _fail("opa is not on PATH (`make tools` builds it into .tools/bin)")
        assert opa is not None
        args = [opa, "test", str(path)] + (["-v"] if verbose else [])
        args += ["-r", pattern] if pattern else []
        sys.exit(subprocess.run(args, check=False).returncode)
    try:
        source = load_policy(path)
        results = run_tests(source, pattern)
    except PolicyError as exc:
        _fail(str(exc))
    click.echo(format_results(results, verbose=verbose))
    if not results or any(r.outcome != "PASS" for r in results):
        sys.exit(2)


@policy.command("check")
@_POLICY_DIR
@_DECISION
@click.option("--no-tests", is_flag=True, help="Skip the Rego unit tests.")
def check_cmd(path: Path, decision: str, no_tests: bool) -> None:
    """Compile, validate data files and manifest roots, run the Rego tests, and evaluate the
    decision rule for the repo's conformance cases (conformance/cases.yaml) or a sample input:
    every decision must validate against the Decision contract and match its case. Exit 1 on
    any problem. This is the check a hot reload applies before activating a revision. Also
    says how the embedded engine would evaluate it: regorus's compiled VM, or its interpreter
    and why (docs/policy-authoring.md, "Evaluators")."""
    try:
        source = load_policy(path)
    except PolicyError as exc:
        _fail(str(exc))
    report = check_source(source, decision, run_tests=not no_tests)
    click.echo(report.format())
    if not report.ok:
        sys.exit(1)


@policy.command("eval")
@_POLICY_DIR
@click.option(
    "--input",
    "input_file",
    type=click.File("rb"),
    required=True,
    help="Input document (JSON); - for stdin.",
)
@_DECISION
def eval_cmd(path: Path, input_file: IO[bytes], decision: str) -> None:
    """Print the decision for one input document, as JSON."""
    try:
        doc = json.loads(input_file.read())
        engine = EmbeddedEngine(load_policy(path), decision)
        value = decision_from_value(engine.evaluate(doc), doc)
    except (PolicyError, ValueError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(value.model_dump(mode="json"), indent=2, sort_keys=True))


@policy.command("build")
@_POLICY_DIR
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bundle.tar.gz"),
    show_default=True,
    help="Bundle file to write.",
)
@click.option(
    "--revision", default=None, help="Revision for the manifest (default: the policy's own)."
)
def build_cmd(path: Path, output: Path, revision: str | None) -> None:
    """Write an OPA-compatible bundle (.manifest with a revision, modules, one data.json) that
    `opa run -b` and gatekeeper both load. The policy must compile first."""
    try:
        source = load_policy(path)
        compile_source(source)
    except PolicyError as exc:
        _fail(str(exc))
    problems = root_violations(source)
    if problems:
        _fail("; ".join(problems))
    output.write_bytes(bundle_bytes(source, revision=revision))
    click.echo(
        f"wrote {output} (revision {revision or source.revision}, {len(source.modules)} modules)"
    )


@policy.command("replay")
@click.option(
    "--log",
    "logs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    required=True,
    help="Decision log (JSONL); repeat for rotated files.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="The policy directory or bundle to replay under.",
)
@_DECISION
@click.option("--examples", default=3, show_default=True, help="Examples shown per change.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def replay_cmd(
    logs: tuple[Path, ...], policy_path: Path, decision: str, examples: int, as_json: bool
) -> None:
    """Re-evaluate the inputs recorded in a decision log under another policy and report what
    would change: outcomes and reasons before and after, and the first examples of each change.
    Exit 0 whatever changed (a report, not a test)."""
    try:
        engine = EmbeddedEngine(load_policy(policy_path), decision)
    except PolicyError as exc:
        _fail(str(exc))

    report = asyncio.run(replay_logs(engine, logs, examples=examples))
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.format())
