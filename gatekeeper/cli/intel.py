"""``gatekeeper intel …``: shared intelligence as STIX 2.1 bundles (docs/intel.md).

``import`` converts bundles (files, e.g. saved from a TAXII 2.1 collection) into the JSON the
signal stage loads (setting ``signals.intel_path``); ``export`` writes the clusters a decision
log shows flagged as a bundle another provider can import. Both need the ``stix2`` package
(the ``intel`` extra).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import click

from gatekeeper.errors import ConfigurationError


def _offline() -> Any:
    try:
        from gatekeeper.offline import intel
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise ConfigurationError(
            f"gatekeeper intel needs the stix2 package (pip install 'gatekeeper[intel]'): {exc}"
        ) from exc
    return intel


def _write(path: Path | None, text: str) -> None:
    """``text`` to ``path`` atomically (a gateway reloading it never reads half), or stdout."""
    if path is None:
        sys.stdout.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.group("intel")
def intel() -> None:
    """Shared intelligence: import STIX 2.1 indicators, export flagged clusters."""


@intel.command("import")
@click.argument(
    "bundles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="The intel file to write (setting signals.intel_path), or a directory to write "
    "<first bundle's name>.json into; default: stdout.",
)
@click.option(
    "--strict", is_flag=True, help="Exit with status 1 when any pattern was not (wholly) imported."
)
def import_command(bundles: tuple[Path, ...], out: Path | None, strict: bool) -> None:
    """Convert the indicators of STIX 2.1 BUNDLES into gatekeeper's intel JSON.

    Indicators whose patterns match client prefixes, ASNs, user agents, payment-fingerprint
    hashes or prompt-family bands are kept, with their source, validity, confidence and labels;
    every pattern (or OR term) that cannot be matched is listed on stderr, never dropped
    silently. A bundle saved from a TAXII 2.1 collection is imported the same way.
    """
    offline = _offline()
    result = offline.ImportResult()
    for bundle in bundles:
        try:
            offline.import_bundle(bundle.read_bytes(), result)
        except ValueError as exc:
            raise click.ClickException(f"{bundle.name}: {exc}") from exc
    if out is not None and (out.is_dir() or str(out).endswith(os.sep)):
        out = out / f"{bundles[0].stem}.json"
    _write(out, json.dumps(result.document(), indent=2, ensure_ascii=False) + "\n")
    kinds: Counter[str] = Counter()
    for indicator in result.indicators.values():
        kinds.update(indicator["match"].keys())
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) or "none"
    click.echo(
        f"{len(result.indicators)} indicators imported ({by_kind}) from {result.objects} "
        f"objects; {result.revoked} revoked, {result.expired} already expired"
        + (f"; written to {out}" if out is not None else ""),
        err=True,
    )
    for item in result.unsupported:
        click.echo(f"unsupported: {item['id']}: {item['reason']}", err=True)
    if strict and result.unsupported:
        sys.exit(1)


@intel.command("export")
@click.option(
    "--log",
    "logs",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A decision log (a file, its directory or the active file of a rotated log); repeatable.",
)
@click.option("--since", default=None, help="Only decisions since: 2026-05-01, RFC 3339 or 24h.")
@click.option(
    "--min-level",
    type=click.Choice(["watch", "suspect", "strong"]),
    default="suspect",
    show_default=True,
    help="The lowest anti-extraction grade that makes a decision count as flagged.",
)
@click.option(
    "--min-accounts",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Export a value (prefix, user agent, …) only when this many of the cluster's "
    "accounts used it.",
)
@click.option(
    "--valid-days",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Indicators are valid until the cluster's last flagged request plus this.",
)
@click.option(
    "--producer", default="gatekeeper", show_default=True, help="The producer identity's name."
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=None, help="Default: stdout."
)
def export_command(
    logs: tuple[Path, ...],
    since: str | None,
    min_level: str,
    min_accounts: int,
    valid_days: float,
    producer: str,
    output: Path | None,
) -> None:
    """Write the clusters flagged in decision logs as a STIX 2.1 bundle.

    One identity (the producer); per flagged cluster, an indicator for each kind of value its
    accounts shared (network prefixes, user agents, payment-fingerprint hashes, prompt
    families) and a grouping tying them to the cluster. The bundle is parsed back with stix2
    before it is written. Payment fingerprints the log holds masked (keyed hashes) are not
    exported: another provider could never match them.
    """
    from gatekeeper.offline.audit.query import parse_time
    from gatekeeper.offline.audit.reader import find_log_files, iter_entries

    offline = _offline()
    try:
        since_ns = parse_time(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    files = find_log_files(list(logs)).entries
    result = offline.export_bundle(
        iter_entries(files),
        producer=producer,
        min_level=min_level,
        min_subjects=min_accounts,
        valid_days=valid_days,
        since_ns=since_ns,
    )
    _write(output, result.bundle.serialize(pretty=True) + "\n")
    click.echo(
        f"{result.clusters} flagged clusters, {result.indicators} indicators exported"
        + (
            f"; {result.masked_payments} masked payment fingerprints left out"
            if result.masked_payments
            else ""
        ),
        err=True,
    )
