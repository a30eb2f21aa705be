"""``gatekeeper audit …``: commands for compliance reviewers (see docs/audit.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from gatekeeper.audit.chains import ChainsReport, default_keys, verify_chains
from gatekeeper.audit.keys import Keyring
from gatekeeper.audit.query import (
    Filters,
    collect_stats,
    decision_facts,
    merge_by_time,
    parse_time,
)
from gatekeeper.audit.reader import LogFiles, chain_names, find_chains, iter_entries
from gatekeeper.audit.verify import VerifyReport, verify_log
from gatekeeper.errors import GatekeeperError

_PATHS = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
_KEYS = click.option(
    "--keys",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of trusted public keys (<fingerprint>.pub); default: keys/ beside the log.",
)


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
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="gatekeeper's TOML configuration: its audit.witness is the default --witness.",
)
@click.option(
    "--allow-open-tail",
    is_flag=True,
    help="The log is live: accept that it does not end with a shutdown checkpoint, as long as "
    "its unsigned tail is no longer and no older than its writer lets one be.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def verify(
    paths: tuple[Path, ...],
    keys: Path | None,
    partial_start: bool,
    witness: str | None,
    config: Path | None,
    allow_open_tail: bool,
    as_json: bool,
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
    report = _verify(chains, keys, partial_start, records, allow_open_tail)
    if as_json:
        click.echo(orjson.dumps(_json_report(report)).decode())
    else:
        click.echo(report.summary())
    sys.exit(report.exit_code)


@audit.command()
@_PATHS
@click.option("--subject", default=None, help="Subject id or org.")
@click.option(
    "--decision",
    type=click.Choice(["allow", "deny"]),
    default=None,
    help="allow: the request went through; deny: it was refused, by the policy, a quota or "
    "gatekeeper itself (shadow refusals were not enforced: they count as allow).",
)
@click.option("--reason", default=None, help="A reason code, e.g. kyc_insufficient.")
@click.option(
    "--since",
    default=None,
    help="2026-05-01, 2026-05-01T10:00:00Z, or a duration ago: 90s, 15m, 2h, 7d.",
)
@click.option("--until", default=None, help="Same forms as --since.")
@click.option("--country", default=None, help="ISO country code of the client.")
@click.option("--json", "as_json", is_flag=True, help="Print whole events as JSON lines.")
@click.option("--limit", type=int, default=None, help="Stop after this many matches.")
def query(
    paths: tuple[Path, ...],
    subject: str | None,
    decision: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    country: str | None,
    as_json: bool,
    limit: int | None,
) -> None:
    """Print the decisions that match every filter given, as a table or JSON lines.

    The chains of several processes are read together, in time order (the table then names
    each decision's chain)."""
    filters = Filters(
        subject=subject,
        decision=decision,
        reason=reason,
        since_ns=_time(since, "--since"),
        until_ns=_time(until, "--until"),
        country=country,
    )
    chains = _chains(paths)
    names = chain_names(chains)
    width = max(map(len, ["chain", *names]))
    shown = 0
    with _progress(chains, "reading") as update:
        if not as_json:
            click.echo(_row(_COLUMNS, names, "chain", width))
        for index, entry in _entries(chains, update):
            if not filters.match(entry):
                continue
            row = _row(_cells(entry), names, names[index], width)
            click.echo(orjson.dumps(entry).decode() if as_json else row)
            shown += 1
            if limit is not None and shown >= limit:
                break
    click.echo(f"{shown} matching decision(s)", err=True)


@audit.command()
@_PATHS
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def stats(paths: tuple[Path, ...], as_json: bool) -> None:
    """Count decisions: allowed and refused, by reason, status, tier and country."""
    chains = _chains(paths)
    with _progress(chains, "reading") as update:
        result = collect_stats(entry for _, entry in _entries(chains, update)).as_dict()
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
    for title, key in (
        ("refusals by reason", "reasons"),
        ("by status", "statuses"),
        ("by tier", "tiers"),
        ("by country", "countries"),
        ("top refused subjects", "top_refused_subjects"),
    ):
        if result[key]:
            click.echo(f"\n{title}:")
            for name, value in result[key].items():
                shown = (
                    " ".join(f"{k}={v}" for k, v in value.items())
                    if isinstance(value, dict)
                    else value
                )
                click.echo(f"  {name:<28} {shown}")


@audit.command()
@_PATHS
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the HTML report.",
)
@click.option("--title", default="gatekeeper decision log report", show_default=True)
@click.option("--no-verify", is_flag=True, help="Skip checking the chain for the report.")
@_KEYS
def report(
    paths: tuple[Path, ...], output: Path, title: str, no_verify: bool, keys: Path | None
) -> None:
    """Write a self-contained HTML report (charts inline, readable offline)."""
    from gatekeeper.audit.report import render_report

    chains = _chains(paths)
    integrity = None if no_verify else _verify(chains, keys, False, None, False)
    with _progress(chains, "summarising") as update:
        result = collect_stats(entry for _, entry in _entries(chains, update))
    html = render_report(result, integrity, sources=[str(p) for p in paths], title=title)
    output.write_text(html, encoding="utf-8")
    click.echo(f"wrote {output} ({result.decisions} decisions)")


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


def _verify(
    chains: list[LogFiles],
    keys: Path | None,
    partial: bool,
    witness: tuple[str, list[dict[str, Any]]] | None,
    allow_open_tail: bool,
) -> VerifyReport | ChainsReport:
    def keyring(chain: LogFiles) -> Keyring:
        return Keyring(keys or default_keys(chain))

    options: dict[str, Any] = {
        "partial_start": partial,
        "allow_open_tail": allow_open_tail,
        "witness": witness,
    }
    with _progress(chains, "verifying") as update:
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
def _progress(chains: list[LogFiles], label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; coarse percentages for big logs else."""
    total = sum(chain.total_bytes for chain in chains)
    if sys.stderr.isatty():
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield bar.update
        return
    if total < 64 << 20:
        yield lambda n: None
        return
    done, step = 0, total // 10

    def update(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        if before // step != done // step:
            click.echo(f"{label}: {min(100, 100 * done // total)}%", err=True)

    yield update


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
