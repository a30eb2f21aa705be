"""Reading decision logs back: which files make up a log, in chain order, line by line.

A path given to ``gatekeeper audit …`` may be a directory (every ``*.jsonl`` in it), the active
log file (it and its rotated siblings ``<stem>-<seq>.jsonl``), or any one file. Checkpoint
sidecars (``*.checkpoints.jsonl``) are kept apart: they are checked against the log, not read as
part of it. Files are ordered by the sequence number of their first entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.audit.sinks import checkpoint_sidecar, rotated_files

Progress = Callable[[int], None]
_SIDECAR_SUFFIX = ".checkpoints"


@dataclass
class LogFiles:
    """The files of one or more logs: entries in chain order, and checkpoint sidecars."""

    entries: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)

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
