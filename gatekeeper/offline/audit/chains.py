"""Verifying a log made of several chains, one per process that wrote it.

Each chain (``decisions.jsonl``, ``decisions.w1.jsonl``, …, see ``gatekeeper.audit.lock``) is
verified on its own, with its rotated files and its sidecar, exactly as a log of one chain is;
the results are reported together, and the log fails when any of its chains does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from gatekeeper.audit.keys import Keyring
from gatekeeper.offline.audit.reader import LogFiles, Progress, chain_names
from gatekeeper.offline.audit.verify import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_TORN,
    Problem,
    VerifyReport,
    verify_log,
)


@dataclass
class ChainsReport:
    """What ``verify`` found in each of several chains, by chain name."""

    chains: list[tuple[str, VerifyReport]]

    @property
    def exit_code(self) -> int:
        codes = {report.exit_code for _, report in self.chains}
        for code in (EXIT_PROBLEM, EXIT_TORN):
            if code in codes:
                return code
        return EXIT_OK

    @property
    def problem(self) -> Problem | None:
        """The first chain's problem, if any has one."""
        return next((r.problem for _, r in self.chains if r.problem is not None), None)

    @property
    def torn_tail(self) -> dict[str, Any] | None:
        return next((r.torn_tail for _, r in self.chains if r.torn_tail is not None), None)

    @property
    def checkpoints(self) -> int:
        return sum(report.checkpoints for _, report in self.chains)

    def summary(self) -> str:
        """The overall verdict, then each chain's own summary under its name."""
        failed = [name for name, report in self.chains if report.problem is not None]
        torn = [name for name, report in self.chains if report.torn_tail is not None]
        n = len(self.chains)
        if failed:
            head = f"FAILED: {len(failed)} of {n} chains: " + ", ".join(failed)
        elif torn:
            head = f"INCOMPLETE: {len(torn)} of {n} chains end in a torn line: " + ", ".join(torn)
        else:
            head = f"OK: {n} chains, each intact"
        lines = [head]
        for name, report in self.chains:
            lines.append(name)
            lines.extend("  " + line for line in report.summary().splitlines())
        return "\n".join(lines)


class VerifyOptions(TypedDict, total=False):
    """``verify_log``'s options, which ``verify_chains`` applies to every chain."""

    progress: Progress | None
    partial_start: bool
    allow_open_tail: bool
    witness: tuple[str, list[dict[str, Any]]] | None
    now_ns: int | None


def verify_chains(
    chains: Sequence[LogFiles],
    keyring: Callable[[LogFiles], Keyring],
    **options: Unpack[VerifyOptions],
) -> ChainsReport:
    """Verify each chain with the trusted keys ``keyring`` gives for it; with a ``witness``,
    a chain the witness holds checkpoints of, named like one of these chains' family
    (``decisions.jsonl``, ``decisions.w1.jsonl``…) but absent from the files, fails too: a
    worker's chain was deleted."""
    names = chain_names(chains)
    reports = [
        (name, verify_log(chain, keyring(chain), **options))
        for name, chain in zip(names, chains, strict=True)
    ]
    witness = options.get("witness")
    if witness is not None:
        reports += _unclaimed_chains(chains, reports, witness)
    return ChainsReport(reports)


def _unclaimed_chains(
    chains: Sequence[LogFiles],
    reports: list[tuple[str, VerifyReport]],
    witness: tuple[str, list[dict[str, Any]]],
) -> list[tuple[str, VerifyReport]]:
    claimed = set().union(*(report.chain_ids for _, report in reports))
    given = {chain.chain.name for chain in chains if chain.chain is not None}
    families = {_family(name) for name in given}
    newest: dict[str, dict[str, Any]] = {}
    for record in witness[1]:
        chain_id, name = record.get("chain_id"), record.get("chain")
        if chain_id in claimed or not isinstance(name, str) or name in given:
            continue  # a chain given whose id differs is reported by its own check
        if _family(name) not in families:
            continue
        if (record.get("seq") or 0) >= (newest.get(name, {}).get("seq") or 0):
            newest[name] = record
    missing = []
    for name, record in sorted(newest.items()):
        report = VerifyReport(witness=witness[0])
        report.problem = Problem(
            None,
            "missing",
            f"the witness holds checkpoints of a chain {name} (id {record.get('chain_id')}, up "
            f"to seq {record.get('seq')}) that is not among the files given: it was deleted",
        )
        missing.append((name, report))
    return missing


def _family(name: str) -> str:
    """``decisions.jsonl`` for ``decisions.jsonl`` and ``decisions.w3.jsonl`` alike."""
    return re.sub(r"\.w\d+(?=\.[^.]*$)", "", name)


def default_keys(chain: LogFiles) -> Path:
    """Where the public keys of ``chain``'s signers are kept: ``keys/`` beside it (beside the
    path given for it, which may be the directory holding it)."""
    origin = chain.origin or chain.chain or chain.entries[0]
    return (origin if origin.is_dir() else origin.parent) / "keys"
