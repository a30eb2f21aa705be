"""Local sinks, written from the decision log's writer thread: rotating JSONL files and stdout.

The JSONL file is the log's home: the chain is recovered from its last entry when the process
restarts, checkpoints are also appended to a sidecar file (``<stem>.checkpoints<suffix>``) that
the verifier uses to detect a log cut short, and ``sync`` makes what was written durable
(``fsync``) for the ``durable`` mode.

Rotation (by size and/or age) renames the active file to ``<stem>-<first seq, 12 digits><suffix>``
and starts a new one; the chain simply continues in the new file.

The sink holds the chain's lock (``gatekeeper.audit.lock``) from the moment it opens until it
closes, so no second process ever writes into the same chain.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import orjson

from gatekeeper.audit.canonical import digest
from gatekeeper.audit.lock import ChainLock


class Sink(Protocol):
    """Somewhere lines (canonical JSON + ``\\n``) are written, in batches, off the event loop."""

    def write_batch(self, lines: list[bytes]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Recovered:
    """What a restarting log finds on disk."""

    last_entry: dict[str, Any] | None = None
    last_hash: str | None = None
    last_checkpoint: dict[str, Any] | None = None
    torn_tail: dict[str, Any] | None = None
    #: The chain's id, from its last checkpoint (or its last start/restart entry).
    chain_id: str | None = None
    #: The last checkpoint line (to publish again to the witness at start-up).
    checkpoint_line: bytes | None = None


@runtime_checkable
class ChainStore(Protocol):
    """A sink that keeps the chain across restarts and can make writes durable."""

    def recover(self) -> Recovered: ...

    def sync(self) -> None: ...

    def rotation_due(self) -> bool: ...

    def rotate(self) -> None: ...

    def write_checkpoint(self, line: bytes) -> None: ...


_ROTATED = re.compile(r"\d{12}(?:\.\d+)?")  # the first seq, and a counter if it repeats


def checkpoint_sidecar(path: Path) -> Path:
    """Where the checkpoints of the log at ``path`` are also kept."""
    return path.with_name(f"{path.stem}.checkpoints{path.suffix}")


def rotated_files(path: Path) -> list[Path]:
    """The rotated siblings of the active log ``path``, oldest first."""
    prefix, suffix = path.stem + "-", path.suffix
    found = []
    for file in path.parent.glob(f"{prefix}*{suffix}"):
        middle = file.name[len(prefix) : len(file.name) - len(suffix)]
        if _ROTATED.fullmatch(middle):
            found.append((int(middle[:12]), file.name, file))
    return [file for _, _, file in sorted(found)]


class JsonlFileSink:
    """Appends lines to a JSONL file, rotating it by size (bytes) or age (seconds); 0 = never.

    Opening it takes the chain's lock: raises ``ChainLocked`` when another writer holds it
    (``lock``: the lock is already held, and given; the log's writer process is given the lock
    its parent took)."""

    def __init__(
        self,
        path: Path,
        *,
        rotate_bytes: int = 0,
        rotate_seconds: float = 0.0,
        lock: ChainLock | None = None,
    ) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._lock = lock if lock is not None else ChainLock(path)
        try:
            self._file: BinaryIO = path.open("ab")
        except BaseException:
            self._lock.release()
            raise
        self._size = self._file.tell()
        self._opened = time.monotonic()
        self._sidecar: BinaryIO | None = None

    @property
    def lock(self) -> ChainLock:
        """The chain's lock, held while the sink is open."""
        return self._lock

    def write_batch(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        start = self._size
        try:
            self._file.write(data)
            self._file.flush()
        except OSError:
            # Leave no partial line behind: the chain must continue from a whole entry.
            self._truncate_to(start)
            raise
        self._size += len(data)

    def _truncate_to(self, size: int) -> None:
        try:
            self._file.close()
            os.truncate(self.path, size)
        except OSError:
            pass
        self._file = self.path.open("ab")
        self._size = self._file.tell()

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def rotation_due(self) -> bool:
        """True once the active file has reached ``rotate_bytes`` or ``rotate_seconds``."""
        if self._size == 0:
            return False
        if self.rotate_bytes and self._size >= self.rotate_bytes:
            return True
        return bool(self.rotate_seconds) and time.monotonic() - self._opened >= self.rotate_seconds

    def rotate(self) -> None:
        """Close the active file under its rotated name and start an empty one."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        with self.path.open("rb") as active:
            first = _seq_of(active.readline())
        target = self.path.with_name(f"{self.path.stem}-{first:012d}{self.path.suffix}")
        n = 1
        while target.exists():  # never overwrite: a second rotation at the same seq is kept too
            target = self.path.with_name(f"{self.path.stem}-{first:012d}.{n}{self.path.suffix}")
            n += 1
        os.rename(self.path, target)
        self._file = self.path.open("ab")
        self._size = 0
        self._opened = time.monotonic()
        _fsync_dir(self.path.parent)

    def write_checkpoint(self, line: bytes) -> None:
        if self._sidecar is None:
            sidecar = checkpoint_sidecar(self.path)
            _cut_torn_tail(sidecar)
            self._sidecar = sidecar.open("ab")
        self._sidecar.write(line)
        self._sidecar.flush()
        os.fsync(self._sidecar.fileno())

    def recover(self) -> Recovered:
        """The last whole entry on disk (cutting a torn final line off, and describing it);
        checkpoints the log holds and the sidecar lacks (a crash between the two writes) are
        appended to the sidecar."""
        torn = _cut_torn_tail(self.path)
        self._file.close()
        self._file = self.path.open("ab")
        self._size = self._file.tell()
        candidates = [self.path, *reversed(rotated_files(self.path))]
        last_raw = next((raw for f in candidates if (raw := _last_line(f)) is not None), None)
        last_entry = _parse(last_raw)
        last_hash = digest(last_raw) if last_entry is not None and last_raw is not None else None
        checkpoint, chain_id, line = self._last_checkpoint()
        return Recovered(last_entry, last_hash, checkpoint, torn, chain_id, line)

    def _last_checkpoint(self) -> tuple[dict[str, Any] | None, str | None, bytes | None]:
        """The last checkpoint (seq and hash), the chain id and the checkpoint's line."""
        # The sidecar is written after the log, so a crash in between leaves the newest
        # checkpoints only in the active file: look there first, back to the sidecar's newest.
        sidecar_raw = _last_line(checkpoint_sidecar(self.path))
        sidecar = _parse(sidecar_raw)
        floor = sidecar.get("gatekeeper", {}).get("seq", 0) if sidecar else 0
        unsidecarred: list[bytes] = []
        chain_id: str | None = None
        for n, raw in enumerate(_reverse_lines(self.path)):
            if n > 100_000:  # a log without checkpoints: do not read all of it at start-up
                break
            entry = _parse(raw)
            gk = entry.get("gatekeeper", {}) if entry else {}
            if not isinstance(gk, dict) or not isinstance(gk.get("seq"), int) or gk["seq"] <= floor:
                break
            if gk.get("kind") == "checkpoint":
                unsidecarred.append(raw)
            elif chain_id is None and gk.get("kind") in ("start", "restart"):
                payload = gk.get(gk["kind"])
                chain_id = payload.get("chain_id") if isinstance(payload, dict) else None
        for raw in reversed(unsidecarred):
            self.write_checkpoint(raw + b"\n")
        last_raw = unsidecarred[0] if unsidecarred else sidecar_raw
        last = _parse(last_raw)
        if last is None or last_raw is None:
            return None, chain_id, None
        gk = last.get("gatekeeper", {})
        body = gk.get("checkpoint") if isinstance(gk, dict) else None
        found = body.get("chain_id") if isinstance(body, dict) else None
        ref = {"seq": gk.get("seq"), "hash": digest(last_raw)}
        return ref, found if isinstance(found, str) else chain_id, last_raw

    def close(self) -> None:
        try:
            self._file.close()
            if self._sidecar is not None:
                self._sidecar.close()
        finally:
            self._lock.release()  # only once everything written is in the files


class StdoutSink:
    """Writes each line to standard output (for a container's log collector)."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> BinaryIO | None:
        """The stream written to (``None``: standard output, whatever it is at the time)."""
        return self._stream

    def write_batch(self, lines: list[bytes]) -> None:
        stream = self._stream or sys.stdout.buffer
        stream.write(b"".join(lines))
        stream.flush()

    def close(self) -> None:
        return None


def _parse(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _seq_of(raw: bytes) -> int:
    try:
        seq = orjson.loads(raw)["gatekeeper"]["seq"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return 0
    return seq if isinstance(seq, int) else 0


def _cut_torn_tail(path: Path) -> dict[str, Any] | None:
    """Remove a final line that is incomplete or unreadable (a write cut by a crash).

    Returns its description (size, SHA-256, file), for the restart entry, or ``None``.
    """
    found = _read_last_line(path)
    if found is None:
        return None
    end, tail = found
    complete = tail.endswith(b"\n")
    if complete:
        try:
            orjson.loads(tail)
            return None
        except orjson.JSONDecodeError:
            pass
    os.truncate(path, end)
    return {
        "file": path.name,
        "offset": end,
        "bytes": len(tail),
        "sha256": hashlib.sha256(tail).hexdigest(),
        "complete_line": complete,
    }


def _read_last_line(path: Path) -> tuple[int, bytes] | None:
    """The offset and bytes (with any final ``\\n``) of the file's last line; ``None`` for a
    missing or empty file."""
    if not path.exists():
        return None
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return None
        start = _last_line_start(file, size)
        file.seek(start)
        return start, file.read()


def _last_line_start(file: BinaryIO, size: int) -> int:
    """Offset of the start of the last line (the one after the last ``\\n`` before the end)."""
    pos = size - 1  # a final "\n" belongs to the last line, not to a new one
    step = 64 << 10
    while pos > 0:
        lo = max(0, pos - step)
        file.seek(lo)
        chunk = file.read(pos - lo)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            return lo + idx + 1
        pos = lo
    return 0


def _reverse_lines(path: Path, step: int = 256 << 10) -> Iterator[bytes]:
    """The lines of ``path``, last first (without their ``\n``)."""
    if not path.exists():
        return
    with path.open("rb") as file:
        pos = file.seek(0, os.SEEK_END)
        rest = b""
        while pos > 0:
            lo = max(0, pos - step)
            file.seek(lo)
            chunk = file.read(pos - lo) + rest
            pos = lo
            lines = chunk.split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                if line:
                    yield line
        if rest:
            yield rest


def _last_line(path: Path) -> bytes | None:
    found = _read_last_line(path)
    return (found[1].rstrip(b"\n") or None) if found is not None else None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
