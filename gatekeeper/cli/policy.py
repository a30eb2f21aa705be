"""``gatekeeper policy …``: commands for policy authors (docs/policy-authoring.md)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

import click

from gatekeeper.cli._options import json_option, output_option
from gatekeeper.errors import PolicyError
from gatekeeper.policy.compile import compile_source, first_lines
from gatekeeper.policy.coverage import coverage_json, coverage_report, format_coverage
from gatekeeper.policy.repo import PolicySource, bundle_bytes, load_policies, load_policy
from gatekeeper.policy.testing import format_json, format_results, run_tests

_POLICY_DIR = click.argument(
    "path", type=click.Path(exists=True, path_type=Path), default=Path("policies"), required=False
)
_POLICY_PATHS = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
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
@_POLICY_PATHS
@click.option("-v", "--verbose", is_flag=True, help="List passing tests too.")
@click.option("-r", "--run", "pattern", default=None, help="Only tests whose name matches.")
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["pretty", "json"]),
    default=None,
    help="Output format (default pretty; with --coverage, OPA's JSON coverage report).",
)
@click.option(
    "--coverage",
    is_flag=True,
    help="Report which lines and rules the tests reach (JSON like `opa test --coverage`; "
    "--format pretty for a summary).",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Coverage percentage below which the run fails (exit 2); implies --coverage.",
)
@click.option("--bench", is_flag=True, help="Benchmark each passing test (time per run).")
@click.option(
    "--benchtime",
    type=float,
    default=0.2,
    show_default=True,
    help="Seconds spent benchmarking each test.",
)
@click.option(
    "-z", "--exit-zero-on-skipped", "skipped_ok", is_flag=True, help="Skipped tests do not fail."
)
@click.option(
    "--engine",
    type=click.Choice(["embedded", "opa"]),
    default="embedded",
    show_default=True,
    help="Run the tests in-process (regorus) or with `opa test` (needs opa on PATH).",
)
def test_cmd(
    paths: tuple[Path, ...],
    verbose: bool,
    pattern: str | None,
    output_format: str | None,
    coverage: bool,
    threshold: float | None,
    bench: bool,
    benchtime: float,
    skipped_ok: bool,
    engine: str,
) -> None:
    """Run the Rego unit tests (test_* rules) of one or more policy paths, like `opa test`.

    Exit 0 when every test passes (or there is none), 2 when one fails, errs or is skipped (or
    coverage is under --threshold), 1 when a path cannot be loaded or compiled."""
    paths = paths or (Path("policies"),)
    coverage = coverage or threshold is not None
    if engine == "opa":
        args = [*map(str, paths)] + (["-v"] if verbose else [])
        args += ["-r", pattern] if pattern else []
        args += ["--format", output_format] if output_format else []
        args += ["--coverage"] if coverage else []
        args += ["--threshold", str(threshold)] if threshold is not None else []
        args += ["--bench"] if bench else []
        args += ["-z"] if skipped_ok else []
        _opa_test(args)
    try:
        source = load_policies(paths, require_modules=False)
        compiled = compile_source(source, coverage=coverage)
        results = run_tests(
            source, pattern, engine=compiled, bench_seconds=benchtime if bench else 0.0
        )
    except PolicyError as exc:
        _fail(str(exc))
    except re.error as exc:
        _fail(f"--run: {exc}")
    failed = any(r.outcome in {"FAIL", "ERROR"} for r in results)
    failed = failed or (not skipped_ok and any(r.outcome == "SKIPPED" for r in results))
    if coverage and not failed:
        report = coverage_report(compiled, source.modules)
        pretty = output_format == "pretty"
        click.echo(format_coverage(report) if pretty else coverage_json(report))
        if threshold is not None and report.get("coverage", 0.0) < threshold:
            click.echo(
                f"Code coverage threshold not met: got {report.get('coverage', 0.0):.2f} "
                f"instead of {threshold:.2f}",
                err=True,
            )
            sys.exit(2)
        return
    if output_format == "json":
        click.echo(format_json(results))
    else:
        click.echo(format_results(results, verbose=verbose))
    if failed:
        # `opa test --coverage` exits 1, not 2, when a test fails (its reports say so).
        sys.exit(1 if coverage else 2)


def _opa_test(args: list[str]) -> None:
    """Run ``opa test`` with ``args`` and exit with its status."""
    opa = shutil.which("opa")
    if opa is None:
        _fail("opa is not on PATH (`make tools` builds it into .tools/bin)")
    assert opa is not None
    sys.exit(subprocess.run([opa, "test", *args], check=False).returncode)


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
    from gatekeeper.policy.check import check_source

    report = check_source(source, decision, run_tests=not no_tests, coverage=True)
    click.echo(report.format())
    if not report.ok:
        sys.exit(1)


@policy.command("eval")
@_POLICY_PATHS
@click.option(
    "-i",
    "--input",
    "input_file",
    type=click.File("rb"),
    default=None,
    help="Input document (JSON); - for stdin.",
)
@click.option(
    "-q",
    "--query",
    default=None,
    help="Any Rego query (`data.gatekeeper.kyc.refusals`, `x := input.subject; x.tier`); "
    "default: the --decision rule.",
)
@_DECISION
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["pretty", "json", "raw"]),
    default="pretty",
    show_default=True,
    help="pretty: the value, indented; json: OPA's result object (expressions, bindings); "
    "raw: the value, compact.",
)
@click.option(
    "--validate/--no-validate",
    default=None,
    help="Validate the value as a Decision (default: only when the query is the policy's "
    "decision rule, data.gatekeeper.decision or the manifest's metadata.decision).",
)
@click.option("--fail", "fail_undefined", is_flag=True, help="Exit 1 when the result is undefined.")
def eval_cmd(
    paths: tuple[Path, ...],
    input_file: IO[bytes] | None,
    query: str | None,
    decision: str,
    output_format: str,
    validate: bool | None,
    fail_undefined: bool,
) -> None:
    """Evaluate a query (by default the decision rule) for one input document, like
    `opa eval`. The decision rule's value is validated and printed as gatekeeper enforces it
    (quota keys and costs filled in). Exit 2 on an error, 1 with --fail when undefined."""
    paths = paths or (Path("policies"),)
    text = query or decision
    try:
        doc = json.loads(input_file.read()) if input_file is not None else None
        source = load_policies(paths)
        engine = compile_source(source)
        if doc is not None:
            engine.set_input_json(json.dumps(doc))
        result = json.loads(engine.eval_query_as_json(text))
    except (PolicyError, ValueError) as exc:
        _fail(str(exc), 2)
    except Exception as exc:  # regorus: a parse or evaluation error of the query
        _fail(first_lines(exc, 6), 2)
    results = result.get("result") or []
    if validate is None:
        validate = text in _decision_rules(source)
    if validate and results:
        from gatekeeper.policy.engine import decision_from_value

        value = results[0]["expressions"][0]["value"]
        try:
            normalized = decision_from_value(value, doc).model_dump(mode="json")
        except PolicyError as exc:
            _fail(f"{text} is not a valid decision: {exc}", 2)
        results[0]["expressions"][0]["value"] = normalized
    if output_format == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    elif not results:
        if output_format == "pretty":
            click.echo("undefined")
    else:
        for found in results:
            shown = found.get("bindings") or found["expressions"][-1]["value"]
            if len(found["expressions"]) == 1 and "bindings" not in found:
                shown = found["expressions"][0]["value"]
            indent = 2 if output_format == "pretty" else None
            click.echo(json.dumps(shown, indent=indent, sort_keys=True))
    if not results and fail_undefined:
        sys.exit(1)


def _decision_rules(source: PolicySource) -> set[str]:
    rules = {"data.gatekeeper.decision"}
    declared = (source.manifest.get("metadata") or {}).get("decision")
    if isinstance(declared, str) and declared:
        rules.add("data." + declared.strip("/").replace("/", "."))
    return rules


@policy.command("build")
@_POLICY_DIR
@output_option("Bundle file to write.", default=Path("bundle.tar.gz"), show_default=True)
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
    from gatekeeper.policy.check import root_violations

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
@json_option("Print the report as JSON.")
def replay_cmd(
    logs: tuple[Path, ...], policy_path: Path, decision: str, examples: int, as_json: bool
) -> None:
    """Re-evaluate the inputs recorded in a decision log under another policy and report what
    would change: outcomes and reasons before and after, and the first examples of each change.
    Exit 0 whatever changed (a report, not a test)."""
    from gatekeeper.offline.policy.replay import replay_logs
    from gatekeeper.policy.embedded import EmbeddedEngine

    try:
        engine = EmbeddedEngine(load_policy(policy_path), decision)
    except PolicyError as exc:
        _fail(str(exc))

    report = asyncio.run(replay_logs(engine, logs, examples=examples))
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.format())
