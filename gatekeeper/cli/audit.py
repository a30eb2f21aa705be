"""``gatekeeper audit …``: commands for compliance reviewers (see docs/audit.md)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from gatekeeper.audit.keys import Keyring
from gatekeeper.cli._options import config_option, json_option, output_option
from gatekeeper.cli.progress import ProgressLine, megabytes
from gatekeeper.errors import GatekeeperError
from gatekeeper.offline.audit.chains import ChainsReport, default_keys, verify_chains
from gatekeeper.offline.audit.query import (
    Filters,
    collect_stats,
    decision_facts,
    merge_by_time,
    parse_time,
)
from gatekeeper.offline.audit.reader import (
    LogFiles,
    chain_names,
    find_chains,
    iter_entries,
    kind_of,
)
from gatekeeper.offline.audit.verify import VerifyReport, verify_log

_PATHS = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
_KEYS = click.option(
    "--keys",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of trusted public keys (<fingerprint>.pub); default: keys/ beside the log.",
)

_PROGRESS = click.option(
    "--progress/--no-progress",
    default=None,
    help="Show how far reading has got, the elapsed time and the time left on stderr (default: "
    "on a terminal; a summary line with the elapsed time is printed either way).",
)

_TIME_FORMS = "2026-05-01, 2026-05-01T10:00:00Z (RFC 3339), or a duration ago: 90s, 15m, 24h, 7d."
#: The filters ``query``, ``stats`` and ``report`` share (``Filters``), in --help order: each
#: one's name and what its ``--name`` option takes besides ``default=None``.
_FILTERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("since", {"help": "From this time: " + _TIME_FORMS}),
    ("until", {"help": "Up to this time; same forms as --since."}),
    ("subject", {"help": "Subject id or org."}),
    ("org", {"help": "Organisation (the subject's org) only."}),
    ("cluster", {"help": "Account cluster id (input.signals.cluster)."}),
    (
        "decision",
        {
            "type": click.Choice(["allow", "deny"]),
            "help": "allow: the request went through; deny: it was refused, by the policy, a "
            "quota or gatekeeper itself (shadow refusals were not enforced: they count as allow).",
        },
    ),
    ("reason", {"help": "A reason code, e.g. kyc_insufficient."}),
    ("tier", {"help": "The subject's tier, e.g. free."}),
    ("country", {"help": "ISO country code of the client (any case)."}),
    ("tag", {"help": "A jurisdiction tag of the client, e.g. EU."}),
    ("level", {"help": "Anti-extraction grade the policy noted: watch, suspect, strong, or any."}),
    ("evidence", {"help": "Anti-extraction evidence, e.g. cot_high."}),
)
_FILTER_OPTIONS = tuple(click.option(f"--{name}", default=None, **kw) for name, kw in _FILTERS)
_FILTER_NAMES = tuple(name for name, _ in _FILTERS)


def _filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared filters to ``command``, which receives them as one ``filters``."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name in _FILTER_NAMES}
        since, until = values.pop("since"), values.pop("until")
        kwargs["filters"] = Filters(
            **values,
            decision_id=kwargs.pop("decision_id", None),
            since_ns=_time(since, "--since"),
            until_ns=_time(until, "--until"),
        )
        command(**kwargs)

    for option in reversed(_FILTER_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


@click.group()
def audit() -> None:
    """Verify, search and summarise decision logs.

    PATH may be the active log file (its rotated siblings and checkpoint sidecar are found
    beside it, and so are the chains other processes wrote beside it: decisions.w1.jsonl, …),
    a directory holding a log's files, or single files.
    """


@audit.command()
@_PATHS
@_KEYS
@click.option(
    "--partial-start",
    is_flag=True,
    help="The earliest files were archived elsewhere: trust the first entry given as the start.",
)
@click.option(
    "--witness",
    default=None,
    help="Where the writer published its checkpoints (redis://host:port[/db]/<stream key>, an "
    "https:// URL, or a file path): the log must reach every checkpoint it holds. Default: "
    "audit.witness of --config.",
)
@config_option("gatekeeper's TOML configuration: its audit.witness is the default --witness.")
@click.option(
    "--allow-open-tail",
    is_flag=True,
    help="The log is live: accept that it does not end with a shutdown checkpoint, as long as "
    "its unsigned tail is no longer and no older than its writer lets one be.",
)
@json_option("Print the result as one JSON object.")
@_PROGRESS
def verify(
    paths: tuple[Path, ...],
    keys: Path | None,
    partial_start: bool,
    witness: str | None,
    config: Path | None,
    allow_open_tail: bool,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Check the hash chain, the checkpoint signatures, the sidecar and the witness.

    A log written by several processes holds one chain per process: each is verified on its
    own and reported under its name; the exit status is the worst of them.

    Exit status: 0 intact; 1 a problem, reported with the first bad sequence number and its
    kind (modified, missing, reordered, inserted, appended, bad_signature, unknown_key,
    truncated, missing_sidecar, open_tail, witness); 3 only a torn final line (a crash
    mid-write: every entry before it verifies).
    """
    chains = _chains(paths)
    if witness is None and config is not None:
        witness = _configured_witness(config)
    records = _witness_records(witness) if witness else None
    report = _verify(chains, keys, partial_start, records, allow_open_tail, progress)
    if as_json:
        click.echo(orjson.dumps(_json_report(report)).decode())
    else:
        click.echo(report.summary())
    sys.exit(report.exit_code)


@audit.command()
@_PATHS
@click.option(
    "--id",
    "decision_id",
    default=None,
    help="A decision id (the x-gatekeeper-decision-id a client quotes): print that decision's "
    "event whole, from whichever chain holds it.",
)
@_filter_options
@json_option("Print whole events as JSON lines.")
@click.option("--limit", type=int, default=None, help="Stop after this many matches.")
@_PROGRESS
def query(
    paths: tuple[Path, ...],
    filters: Filters,
    as_json: bool,
    limit: int | None,
    progress: bool | None,
) -> None:
    """Print the decisions that match every filter given, as a table or JSON lines.

    The chains of several processes are read together, in time order (the table then names
    each decision's chain). With --id, the decision is printed whole (indented JSON, or one
    line with --json); the exit status is 1 when no chain holds it."""
    chains = _chains(paths)
    names = chain_names(chains)
    width = max(map(len, ["chain", *names]))
    whole = filters.decision_id is not None
    shown = 0
    with _progress(chains, "reading", progress) as update:
        if not as_json and not whole:
            click.echo(_row(_COLUMNS, names, "chain", width))
        for index, entry in _entries(chains, update):
            if not filters.match(entry):
                continue
            if whole and not as_json:
                facts = decision_facts(entry)
                click.echo(f"# chain {names[index]}, seq {facts['seq']}")
                click.echo(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode())
            else:
                row = _row(_cells(entry), names, names[index], width)
                click.echo(orjson.dumps(entry).decode() if as_json else row)
            shown += 1
            if limit is not None and shown >= limit:
                break
    click.echo(f"{shown} matching decision(s)", err=True)
    if whole and not shown:
        click.echo(f"no decision {filters.decision_id} in " + ", ".join(names), err=True)
        sys.exit(1)


@audit.command()
@_PATHS
@_filter_options
@json_option("Print the counts as one JSON object.")
@_PROGRESS
def stats(paths: tuple[Path, ...], filters: Filters, as_json: bool, progress: bool | None) -> None:
    """Count decisions: allowed and refused, by reason, status, tier and country; subjects and
    clusters the anti-extraction policy acted on. The filters select which decisions count (the
    log's own entries, checkpoints and gaps, are counted whatever they are)."""
    chains = _chains(paths)
    with _progress(chains, "reading", progress) as update:
        result = collect_stats(_selected(_entries(chains, update), filters)).as_dict()
    if len(chains) > 1:
        result["chains"] = chain_names(chains)
    if as_json:
        click.echo(orjson.dumps(result).decode())
        return
    click.echo(
        f"{result['decisions']} decisions ({result['allowed']} allowed, {result['denied']} "
        f"refused) from {result['first']} to {result['last']}"
    )
    kinds = result["kinds"]
    click.echo(
        f"{result['entries']} entries: {kinds.get('checkpoint', 0)} checkpoints, "
        f"{kinds.get('restart', 0)} restarts, {kinds.get('gap', 0)} gaps "
        f"({result['gap_dropped']} events dropped)"
    )
    if len(chains) > 1:
        click.echo(f"{len(chains)} chains: " + ", ".join(result["chains"]))
    reasons_title = "refusals by reason"
    if result["reason_mentions"] > result["denied"]:
        reasons_title += (
            f" (per refusal; one with several reasons counts under each: "
            f"{result['reason_mentions']} reasons over {result['denied']} refusals)"
        )
    extraction = result["anti_extraction"]
    flagged = {
        name: f"highest={a['highest_level'] or '-'} graded={a['graded']} "
        f"flagged={a['flagged_for_review']} refused={a['refused']} "
        f"reasoning_removed={a['reasoning_removed']}"
        for name, a in list(extraction["flagged_subjects"].items())[:10]
    }
    for title, values in (
        (reasons_title, result["reasons"]),
        ("by status", result["statuses"]),
        ("by tier", result["tiers"]),
        ("by country", result["countries"]),
        ("by jurisdiction tag", result["jurisdictions"]),
        ("top refused subjects", result["top_refused_subjects"]),
        ("anti-extraction grades", extraction["levels"]),
        ("anti-extraction evidence (graded decisions)", extraction["evidence"]),
        ("subjects the anti-extraction policy acted on", flagged),
    ):
        if values:
            click.echo(f"\n{title}:")
            for name, value in values.items():
                shown = (
                    " ".join(f"{k}={v}" for k, v in value.items())
                    if isinstance(value, dict)
                    else value
                )
                click.echo(f"  {name:<28} {shown}")


@audit.command()
@_PATHS
@output_option("Where to write the HTML report.", required=True)
@click.option("--title", default="gatekeeper decision log report", show_default=True)
@click.option("--no-verify", is_flag=True, help="Skip checking the chain for the report.")
@_KEYS
@_filter_options
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=20_000,
    show_default=True,
    help="Decisions embedded in the report's table (the newest); the charts and counts cover "
    "every decision selected. Narrow a big log with the filters rather than raising this.",
)
@_PROGRESS
def report(
    paths: tuple[Path, ...],
    output: Path,
    title: str,
    no_verify: bool,
    keys: Path | None,
    filters: Filters,
    max_rows: int,
    progress: bool | None,
) -> None:
    """Write a self-contained HTML report (charts, tables and script inline, readable offline).

    Charts and counts cover every decision the filters select; the decision table embeds the
    newest --max-rows of them, filterable and exportable (CSV, JSON lines) in the page."""
    from gatekeeper.offline.audit.report import ReportRows, render_report

    chains = _chains(paths)
    names = chain_names(chains)
    integrity = None if no_verify else _verify(chains, keys, False, None, False, progress)
    rows = ReportRows(max_rows)
    with _progress(chains, "summarising", progress) as update:
        selected = _selected(_entries(chains, update), filters, rows.add, names)
        result = collect_stats(selected)
    files = [str(file) for chain in chains for file in chain.entries]
    html = render_report(
        result,
        integrity,
        sources=files,
        chains=names,
        title=title,
        rows=rows,
        selection=filters.as_fragment(),
        paths=[str(p) for p in paths],
    )
    output.write_text(html, encoding="utf-8")
    click.echo(
        f"wrote {output} ({result.decisions} decisions) from {len(files)} file(s) in "
        f"{len(chains)} chain(s); its table holds {len(rows.rows)}"
    )


# -- helpers ------------------------------------------------------------------------------

_COLUMNS = ["seq", "time", "subject", "tier", "country", "decision", "status", "reason", "path"]
_WIDTHS = [7, 20, 18, 10, 7, 8, 6, 24, 24]


def _cells(entry: dict[str, Any]) -> list[str]:
    f = decision_facts(entry)
    stamp = str(f["timestamp"] or "")[:19].replace("T", " ")
    reasons = ",".join(f["reasons"]) or "-"
    return [
        str(f["seq"]),
        stamp,
        str(f["subject"] or "-"),
        str(f["tier"] or "-"),
        str(f["country"] or "-"),
        f["decision"],
        str(f["status"] or "-"),
        reasons,
        str(f["path"] or "-"),
    ]


def _row(cells: list[str], chains: list[str], chain: str, width: int) -> str:
    # The chain column only appears when there are several: one log reads as it always did.
    first = [chain.ljust(width)] if len(chains) > 1 else []
    return "  ".join(first + [c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=True)]).rstrip()


def _chains(paths: tuple[Path, ...]) -> list[LogFiles]:
    chains = find_chains(list(paths))
    if not chains:
        raise click.UsageError("no decision log files found in " + ", ".join(map(str, paths)))
    return chains


def _entries(
    chains: list[LogFiles], update: Callable[[int], None]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every entry with its chain's index: one chain in its order, several by time."""
    if len(chains) == 1:
        return ((0, entry) for entry in iter_entries(chains[0].entries, update))
    return merge_by_time([iter_entries(chain.entries, update) for chain in chains])


def _selected(
    entries: Iterator[tuple[int, dict[str, Any]]],
    filters: Filters,
    keep: Callable[[str, dict[str, Any]], None] | None = None,
    names: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The log's own entries and the decisions ``filters`` select; each decision selected is
    also handed to ``keep`` with its chain's name."""
    for index, entry in entries:
        if kind_of(entry) != "decision":
            yield entry
        elif filters.match(entry):
            if keep is not None and names is not None:
                keep(names[index], entry)
            yield entry


def _verify(
    chains: list[LogFiles],
    keys: Path | None,
    partial: bool,
    witness: tuple[str, list[dict[str, Any]]] | None,
    allow_open_tail: bool,
    progress: bool | None = None,
) -> VerifyReport | ChainsReport:
    def keyring(chain: LogFiles) -> Keyring:
        return Keyring(keys or default_keys(chain))

    options: dict[str, Any] = {
        "partial_start": partial,
        "allow_open_tail": allow_open_tail,
        "witness": witness,
    }
    with _progress(chains, "verifying", progress) as update:
        if len(chains) == 1 and witness is None:
            return verify_log(chains[0], keyring(chains[0]), progress=update, **options)
        report = verify_chains(chains, keyring, progress=update, **options)
    if len(report.chains) == 1:
        return report.chains[0][1]
    return report


def _configured_witness(config: Path) -> str | None:
    from gatekeeper.settings import Settings

    try:
        return Settings.load(config).audit.witness
    except GatekeeperError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc


def _witness_records(spec: str) -> tuple[str, list[dict[str, Any]]]:
    from gatekeeper.audit.witness import WitnessError, open_witness, read_witness

    try:
        witness = open_witness(spec)
    except WitnessError as exc:
        raise click.BadParameter(str(exc), param_hint="--witness") from exc
    try:
        return witness.description, read_witness(witness)
    except Exception as exc:  # the witness cannot be read: the log cannot be checked with it
        raise click.ClickException(f"cannot read the witness {witness.description}: {exc}") from exc
    finally:
        witness.close()


def _time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


@contextmanager
def _progress(
    chains: list[LogFiles], label: str, enabled: bool | None = None
) -> Iterator[Callable[[int], None]]:
    """Progress through the chains' files on stderr (bytes read, elapsed time, time left), at
    most once a second, when stderr is a terminal or ``enabled``; then a summary line."""
    total = sum(chain.total_bytes for chain in chains)
    line = ProgressLine("", label=label, amount=megabytes, enabled=enabled)
    done = 0

    def update(n: int) -> None:
        nonlocal done
        done += n
        line(done, total)

    line(0, total)
    yield update
    line.finish()


def _json_report(report: VerifyReport | ChainsReport) -> dict[str, Any]:
    if isinstance(report, VerifyReport):
        return _report_dict(report)
    return {
        "ok": report.exit_code == 0,
        "exit_code": report.exit_code,
        "chains": [{"chain": name, **_report_dict(chain)} for name, chain in report.chains],
    }


def _report_dict(report: VerifyReport) -> dict[str, Any]:
    problem = report.problem
    return {
        "ok": report.exit_code == 0,
        "exit_code": report.exit_code,
        "problem": None
        if problem is None
        else {
            "seq": problem.seq,
            "kind": problem.kind,
            "detail": problem.detail,
            "file": problem.file,
            "line": problem.line,
        },
        "torn_tail": report.torn_tail,
        "entries": report.entries,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "decisions": report.decisions,
        "checkpoints": report.checkpoints,
        "last_checkpoint_seq": report.last_checkpoint_seq,
        "keys": sorted(report.keys),
        "restarts": report.restarts,
        "gaps": report.gaps,
        "gap_dropped": report.gap_dropped,
        "closed": report.closed,
        "unsigned": report.unsigned,
        "chain_ids": sorted(report.chain_ids),
        "witness": report.witness,
        "witnessed": report.witnessed,
        "witness_last_seq": report.witness_last_seq,
        "notes": report.notes,
        "files": report.files,
    }
