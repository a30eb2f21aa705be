"""Reading decision logs back: which files make up a log, in chain order, line by line.

A path given to ``gatekeeper audit …`` may be a directory (every ``*.jsonl`` in it), the active
log file (it and its rotated siblings ``<stem>-<seq>.jsonl``), or any one file. Checkpoint
sidecars (``*.checkpoints.jsonl``) are kept apart: they are checked against the log, not read as
part of it. Files are ordered by the sequence number of their first entry.

One log path can hold several chains, one per process that wrote it (``gatekeeper.audit.lock``):
``decisions.jsonl`` and the worker chains ``decisions.w1.jsonl``, ``decisions.w2.jsonl``, … each
with rotated siblings and a sidecar of their own. ``find_chains`` sorts the files it finds into
chains (by the active file each belongs to); the base path stands for all the chains beside it.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.audit.lock import worker_slot
from gatekeeper.audit.sinks import checkpoint_sidecar, rotated_files

Progress = Callable[[int], None]
_SIDECAR_SUFFIX = ".checkpoints"
_ROTATED_STEM = re.compile(r"(.+)-\d{12}(?:\.\d+)?")


@dataclass
class LogFiles:
    """The files of one or more logs: entries in chain order, and checkpoint sidecars."""

    entries: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    #: The active file of the chain these files make (``find_chains``), and the path given
    #: that named it (the trusted keys are looked for beside it).
    chain: Path | None = None
    origin: Path | None = None

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries)


@dataclass(slots=True)
class Line:
    """One line of a log file (``raw`` without its newline)."""

    file: Path
    number: int
    raw: bytes
    terminated: bool
    last: bool = False


def is_sidecar(path: Path) -> bool:
    return path.stem.endswith(_SIDECAR_SUFFIX)


def find_log_files(paths: Sequence[Path]) -> LogFiles:
    """Expand ``paths`` into the log's files (see the module docstring)."""
    entries: dict[Path, None] = {}
    sidecars: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            candidates = sorted(path.glob("*.jsonl"))
        else:
            candidates = [path]
            if not is_sidecar(path):
                candidates += rotated_files(path)
                if checkpoint_sidecar(path).exists():
                    candidates.append(checkpoint_sidecar(path))
        for file in candidates:
            (sidecars if is_sidecar(file) else entries)[file.resolve()] = None
    ordered = sorted(entries, key=lambda p: (_first_seq(p), p.name))
    return LogFiles(ordered, list(sidecars))


def chain_of(file: Path) -> Path:
    """The active file of the chain ``file`` belongs to: itself, or the one it was rotated
    from, or the one whose checkpoints it keeps."""
    stem = file.stem
    if stem.endswith(_SIDECAR_SUFFIX):
        stem = stem[: -len(_SIDECAR_SUFFIX)]
    elif rotated := _ROTATED_STEM.fullmatch(stem):
        stem = rotated.group(1)
    return file.with_name(stem + file.suffix)


def worker_chains(path: Path) -> list[Path]:
    """The active files of the worker chains beside the log ``path`` (``<stem>.w<N>``), whether
    or not the active file itself still exists (its rotated files may)."""
    found = {
        chain_of(file) for file in path.parent.glob(f"{glob.escape(path.stem)}.w*{path.suffix}")
    }
    return sorted(
        (chain for chain in found if (worker_slot(path, chain) or 0) > 0),
        key=lambda chain: worker_slot(path, chain) or 0,
    )


def find_chains(paths: Sequence[Path]) -> list[LogFiles]:
    """Expand ``paths`` into chains, each with its files in chain order and its sidecar.

    A directory holds every chain in it; a log file stands for its own chain and the worker
    chains beside it; a rotated file or a sidecar joins the chain it belongs to. Chains with no
    entry file are left out."""
    chains: dict[Path, tuple[Path, dict[Path, None], dict[Path, None]]] = {}
    for path in paths:
        if path.is_dir():
            candidates = sorted(path.glob("*.jsonl"))
        elif is_sidecar(path):
            candidates = [path]
        else:
            candidates = [path]
            for chain in [path, *worker_chains(path)]:
                candidates += [chain] if chain.exists() and chain != path else []
                candidates += rotated_files(chain)
                if checkpoint_sidecar(chain).exists():
                    candidates.append(checkpoint_sidecar(chain))
        for file in candidates:
            resolved = file.resolve()
            _, entries, sidecars = chains.setdefault(chain_of(resolved), (path, {}, {}))
            (sidecars if is_sidecar(resolved) else entries)[resolved] = None
    found = [
        LogFiles(
            sorted(entries, key=lambda p: (_first_seq(p), p.name)), list(sidecars), chain, origin
        )
        for chain, (origin, entries, sidecars) in chains.items()
        if entries
    ]
    return sorted(found, key=lambda f: _natural(str(f.chain)))


def chain_names(chains: Sequence[LogFiles]) -> list[str]:
    """Short names for ``chains``: file names when they share a directory, else paths."""
    paths = [c.chain or c.entries[0] for c in chains]
    same_dir = len({p.parent for p in paths}) <= 1
    return [p.name if same_dir else str(p) for p in paths]


def _natural(text: str) -> list[tuple[int, int | str]]:
    """Sorts ``decisions.w2`` before ``decisions.w10``."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


def _first_seq(path: Path) -> float:
    try:
        with path.open("rb") as file:
            seq = orjson.loads(file.readline())["gatekeeper"]["seq"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return float("inf")
    return float(seq) if isinstance(seq, int) else float("inf")


def iter_lines(files: Sequence[Path], progress: Progress | None = None) -> Iterator[Line]:
    """Every non-empty line of ``files`` in order; the very last one is marked ``last``."""
    pending: Line | None = None
    for path in files:
        with path.open("rb") as file:
            for number, raw in enumerate(file, start=1):
                if progress is not None:
                    progress(len(raw))
                terminated = raw.endswith(b"\n")
                stripped = raw.rstrip(b"\r\n")
                if not stripped.strip():
                    continue
                if pending is not None:
                    yield pending
                pending = Line(path, number, stripped, terminated)
    if pending is not None:
        pending.last = True
        yield pending


def iter_entries(
    files: Sequence[Path], progress: Progress | None = None
) -> Iterator[dict[str, Any]]:
    """The parsed entries of ``files`` (unreadable lines are skipped: ``verify`` reports them)."""
    for line in iter_lines(files, progress):
        try:
            entry = orjson.loads(line.raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            yield entry


def kind_of(entry: dict[str, Any]) -> str:
    """An entry's kind (``decision`` for request events, also OPA events without our key)."""
    gk = entry.get("gatekeeper")
    kind = gk.get("kind") if isinstance(gk, dict) else None
    return kind if isinstance(kind, str) else "decision"
