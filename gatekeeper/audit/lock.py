"""One writer per chain: an exclusive OS lock beside each chain's active file.

A chain is only a chain if one process writes it: two writers appending to one file each number
their entries from their own head, and the file holds two entries per seq. So the JSONL sink
takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<log>.lock`` (``decisions.jsonl.lock``) for as
long as it is open. The lock file sits beside the log rather than being the log itself, so the
lock survives rotation (the active file is renamed away; the lock file stays). The OS drops the
lock when the process ends, however it ends (``kill -9`` included), and the file keeps the pid
of the last holder, so a process that finds the lock taken can name who holds it.

A second process pointed at the same path (``uvicorn --workers 2``, or a new server started
while the old one is still shutting down) gets a chain of its own beside the first, in the
lowest free *worker slot*: ``decisions.w1.jsonl``, ``decisions.w2.jsonl``, … (setting
``audit.on_locked = "own_chain"``, the default), or stops at start-up (``"fail"``). A worker
slot's files never look like rotated siblings (``<stem>-<12 digits>.jsonl``): the ``.w<N>``
part comes before the suffix and has no ``-``. A restarted worker takes the lowest slot whose
lock is free, so it continues an existing chain rather than starting a new file every time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import weakref
from pathlib import Path

from gatekeeper.errors import ConfigurationError

#: How many worker slots (``.w1`` … ``.w<N>``) a process tries before giving up.
MAX_WORKER_SLOTS = 256
_WORKER_SLOT = re.compile(r"\.w([1-9]\d*)")


def lock_path(path: Path) -> Path:
    """The lock file of the chain whose active file is ``path``."""
    return path.with_name(path.name + ".lock")


def worker_chain_path(path: Path, slot: int) -> Path:
    """The active file of worker slot ``slot`` beside the log ``path`` (slot 0: ``path``)."""
    return path if slot == 0 else path.with_name(f"{path.stem}.w{slot}{path.suffix}")


def worker_slot(base: Path, path: Path) -> int | None:
    """The worker slot of the chain ``path`` beside the log ``base``, if it is one of them."""
    if path.parent != base.parent or path.suffix != base.suffix:
        return None
    if path.stem == base.stem:
        return 0
    if not path.stem.startswith(base.stem):
        return None
    match = _WORKER_SLOT.fullmatch(path.stem[len(base.stem) :])
    return int(match.group(1)) if match else None


class ChainLocked(ConfigurationError):
    """Another process holds the lock of a decision log chain."""

    def __init__(self, path: Path, holder: int | None) -> None:
        who = f"process {holder}" if holder is not None else "another process (pid unknown)"
        super().__init__(
            f"decision log {path} is being written by {who} (lock {lock_path(path)}); one "
            "chain has one writer: give this process its own audit.path, or set "
            'audit.on_locked = "own_chain" to write a chain of its own beside it'
        )
        self.path = path
        self.holder = holder


def _finalizer(lock: ChainLock, fd: int) -> weakref.finalize:  # type: ignore[type-arg]
    """Closes ``fd`` when ``lock`` is dropped, but not at interpreter exit: weakref's exit hook
    runs before the decision log's own (``atexit`` runs the later registered first), and
    would release the lock while the log's writer still writes the events an app left
    unclosed (or hands the lock to its writer process: a descriptor closed under it). The
    system closes it when the process ends."""
    release = weakref.finalize(lock, _close, fd)
    release.atexit = False
    return release


class ChainLock:
    """An exclusive, non-blocking lock on the chain whose active file is ``path``.

    Raises ``ChainLocked`` when another process (or another open sink in this one) holds it,
    and ``ConfigurationError`` when the lock file cannot be created or locked at all."""

    def __init__(self, path: Path) -> None:
        self.path = lock_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigurationError(f"decision log lock {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ChainLocked(path, holder) from None
        except OSError as exc:  # e.g. ENOLCK: a file system without locks
            os.close(fd)
            raise ConfigurationError(f"decision log lock {self.path}: {exc}") from exc
        # Only the holder writes the file, so a reader of a held lock sees the holder's pid
        # (or nothing, in the instant between the lock and this write).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        # A sink dropped without close (start-up failed further on) must not keep the lock.
        self._release = _finalizer(self, fd)

    @classmethod
    def inherited(cls, path: Path, fd: int) -> ChainLock:
        """The lock held through ``fd``, a descriptor of the lock file this process was given
        by the process that took it (the log's writer process): an ``flock`` belongs to the
        open file, which both share, so it holds while either keeps it open."""
        lock = cls.__new__(cls)
        lock.path = lock_path(path)
        lock._release = _finalizer(lock, fd)
        return lock

    def fileno(self) -> int:
        """The descriptor through which the lock is held (to hand to a writer process)."""
        fd = self._release.peek()
        if fd is None:
            raise ValueError("the chain lock has been released")
        return int(fd[2][0])

    @property
    def held(self) -> bool:
        return self._release.alive

    def release(self) -> None:
        """Let the lock go (closing the file does it; the file itself stays, for the next)."""
        self._release()


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
