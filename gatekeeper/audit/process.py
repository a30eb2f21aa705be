"""The decision log's writer process: sealing off the event loop's interpreter lock.

With ``audit.sealer = "process"`` each decision log (one per worker) starts a writer process of
its own, ``python -m gatekeeper.audit.process``, when its first event comes. ``ProcessSealer``
(the ``Sealer`` of the log's writer thread, in the worker) sends it each batch the thread takes
off the queue; the process masks, canonicalises, hashes, signs, writes and fsyncs it with a
``ChainSealer`` (``gatekeeper.audit.sealer``), exactly as the thread would, and answers once the
batch is written (and fsynced, when a durable event or a checkpoint asked for it). The writer
thread waits for that answer before it completes the batch's durable waiters, so a durable
response still goes out only after the fsync.

What stays in the worker: recording (one queue ``put``), the writer thread, which serialises each
batch (``orjson``, a few µs per event) and waits on the pipe without the interpreter lock, the
remote sinks and the witness publisher (the process sends the sealed entries and checkpoints
back for them, only when there are any).

The wire: the process's standard input carries frames from the worker, a second pipe (passed as
a descriptor) carries the answers; a frame is a 4-byte big-endian length and an ``orjson``
document. The first frame describes the log: the chain file (its rotation), the lock's
descriptor, the masker (``Masker.describe``), the signing key, the checkpoint interval, the
labels. The chain's lock (``gatekeeper.audit.lock``) is the worker's: it took it when it opened
the chain file, and it passes the lock's open file to the process, so the lock holds as long as
either of them lives, and one chain still has one writer.

The process ends when its input ends: when the worker stops the log (after the shutdown
checkpoint), and when the worker dies, however it dies (the pipe's other end is closed by the
kernel). It ignores SIGINT and SIGTERM, which a terminal or a service manager sends to the
whole process group: the worker decides when the log is done. When the process dies on its own
(killed, out of memory), the worker's writer thread ends at once, as when the thread itself
dies: durable requests are refused (``503 decision_log_unavailable``), other events are dropped
and counted, and ``/readyz`` reports the log not ready.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from gatekeeper.audit.canonical import canonical_json
from gatekeeper.audit.chain import ChainHead
from gatekeeper.audit.keys import Signer
from gatekeeper.audit.lock import ChainLock
from gatekeeper.audit.masking import Masker
from gatekeeper.audit.remote import Item
from gatekeeper.audit.sealer import ChainSealer, SealerStopped, SealOptions, unwritable
from gatekeeper.audit.sinks import JsonlFileSink, Sink, StdoutSink

log = logging.getLogger("gatekeeper.audit")

_LENGTH = struct.Struct(">I")
#: How long stopping waits for the process to end before it is killed.
_STOP_SECONDS = 30.0


class ProcessSealer:
    """The ``Sealer`` that seals in a writer process (see the module docstring).

    Its sinks must be what the process can open itself: the chain's ``JsonlFileSink``, and
    ``StdoutSink()`` writing to the standard output (which the process shares)."""

    def __init__(
        self, sink: Sink, options: SealOptions, *, sinks: Sequence[Sink] = (), remote: bool = False
    ) -> None:
        if not isinstance(sink, JsonlFileSink):
            raise ValueError("the process sealer writes a JSONL chain file (JsonlFileSink)")
        if any(not isinstance(s, StdoutSink) or s.stream is not None for s in sinks):
            raise ValueError("the process sealer's other sinks can only be stdout (StdoutSink())")
        self.sink = sink
        self.masker = options.masker
        self.publish = options.publish
        signer = options.signer
        self._spec: dict[str, Any] = {
            "path": str(sink.path),
            "rotate_bytes": sink.rotate_bytes,
            "rotate_seconds": sink.rotate_seconds,
            "stdout": bool(sinks),
            "masker": self.masker.describe() if self.masker is not None else None,
            "signing_key": signer.private_pem().decode() if signer is not None else None,
            "checkpoint_every": options.checkpoint_every,
            "checkpoint_seconds": options.checkpoint_seconds,
            "labels": dict(options.labels),
            "remote": remote,
            "witness": self.publish is not None,
        }
        self._head = ChainHead()
        self._checkpoint_due: float | None = None
        self._policy: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: IO[bytes] | None = None
        self._stopped: Callable[[], None] | None = None
        self._stopping = False
        #: One exchange on the pipe at a time (``prepare`` runs beside the writer thread).
        self._lock = threading.Lock()
        #: Batches sent to the process to write, and the fsyncs it made so far.
        self.batches = 0
        self.syncs = 0

    @property
    def head(self) -> ChainHead:
        return self._head

    @property
    def pid(self) -> int | None:
        """The writer process's pid, once it runs."""
        return self._proc.pid if self._proc is not None else None

    def watch(self, stopped: Callable[[], None]) -> None:
        self._stopped = stopped

    def until_checkpoint(self) -> float | None:
        if self._checkpoint_due is None:
            return None
        return max(0.0, self._checkpoint_due - time.monotonic())

    def prepare(self) -> None:
        """Start the writer process and wait until it answers (it has imported what it
        needs), so that the first events do not wait for it to boot."""
        with self._lock:
            if self._proc is None and not self._stopping:
                self._spawn()
                self._call({"op": "ping"})

    def start(self) -> list[Item]:
        with self._lock:
            if self._proc is None:
                self._spawn()
            self.batches += 1
            return self._call({"op": "start"})

    def write(
        self, entries: list[dict[str, Any]], sync: bool, checkpoint: str | None
    ) -> list[Item]:
        with self._lock:
            return self._write(entries, sync, checkpoint)

    def _write(
        self, entries: list[dict[str, Any]], sync: bool, checkpoint: str | None
    ) -> list[Item]:
        head = b'{"op":"write","sync":%s,"checkpoint":%s' % (
            b"true" if sync else b"false",
            orjson.dumps(checkpoint),
        )
        if self.masker is not None:
            policy = self.masker.policy_source()
            if policy is not self._policy:  # a new policy revision: its rules, once
                try:
                    head += b',"policy":' + orjson.dumps(policy)
                    self._policy = policy
                except (TypeError, orjson.JSONEncodeError):
                    log.error("the policy's mask rules are not JSON; the writer keeps the last")
        self.batches += 1
        return self._call(head + b',"entries":[' + b",".join(map(_encode, entries)) + b"]}")

    def stop(self) -> None:
        """End the process: its input ends, it closes its files and exits."""
        self._stopping = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("the decision log writer process %d did not stop; killing it", proc.pid)
            proc.kill()
            proc.wait()
        if self._answers is not None:
            self._answers.close()

    # -- the worker's side of the pipe -----------------------------------------------------

    def _spawn(self) -> None:
        lock_fd = self.sink.lock.fileno()
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gatekeeper.audit.process", str(write_fd), str(lock_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd, lock_fd),
                env=env,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._answers = open(read_fd, "rb")  # noqa: SIM115 - closed by stop()
        threading.Thread(
            target=self._wait_for_exit, args=(self._proc,), name="decision-log-process", daemon=True
        ).start()
        self._send(orjson.dumps(self._spec))

    def _wait_for_exit(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        if not self._stopping:
            log.error("the decision log writer process %d ended (status %s)", proc.pid, code)
            if self._stopped is not None:
                self._stopped()

    def _send(self, frame: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise SealerStopped("the decision log writer process is not running")
        try:
            proc.stdin.write(_LENGTH.pack(len(frame)) + frame)
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise SealerStopped(f"the decision log writer process has ended ({exc})") from exc

    def _call(self, frame: dict[str, Any] | bytes) -> list[Item]:
        self._send(frame if isinstance(frame, bytes) else orjson.dumps(frame))
        answer = _read_frame(self._answers) if self._answers is not None else None
        if answer is None:
            raise SealerStopped("the decision log writer process has ended")
        seq, hash_, last, since = answer["head"]
        self._head = ChainHead(seq, hash_, last, since)
        self.syncs = answer["syncs"]
        until = answer["until"]
        self._checkpoint_due = None if until is None else time.monotonic() + until
        if self.publish is not None:
            for line in answer["checkpoints"]:
                self.publish(line.encode())
        if not answer["ok"]:
            raise OSError(answer["error"])
        return [(seq, line.encode()) for seq, line in answer["items"]]


def _encode(entry: dict[str, Any]) -> bytes:
    """One entry for the wire; what the process will log in its place if it is not JSON."""
    try:
        return orjson.dumps(entry)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return canonical_json(entry)  # integers beyond 64 bits: as the chain will spell them
    except Exception as exc:
        return orjson.dumps(unwritable(entry, exc))


def _read_frame(stream: IO[bytes]) -> Any:
    """The next frame's document; ``None`` at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        return None
    return orjson.loads(body)


# -- the writer process ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The writer process: ``python -m gatekeeper.audit.process <answer fd> <lock fd>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    answer_fd, lock_fd = int(args[0]), int(args[1])
    # The worker decides when the log is done (its input ends): a Ctrl-C or a service
    # manager's SIGTERM to the whole group must not cut the log off before the worker's
    # last events and its shutdown checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s decision-log-writer[%(process)d] %(levelname)s %(message)s",
    )
    inbox = sys.stdin.buffer
    outbox = open(answer_fd, "wb")  # noqa: SIM115 - for the life of the process
    spec = _read_frame(inbox)
    if spec is None:
        return 0
    path = Path(spec["path"])
    sink = JsonlFileSink(
        path,
        rotate_bytes=spec["rotate_bytes"],
        rotate_seconds=spec["rotate_seconds"],
        lock=ChainLock.inherited(path, lock_fd),
    )
    policy: list[Any] = [None]
    masker = (
        Masker.described(spec["masker"], lambda: policy[0]) if spec["masker"] is not None else None
    )
    key = spec["signing_key"]
    checkpoints: list[bytes] = []
    options = SealOptions(
        masker=masker,
        signer=Signer.from_pem(key.encode()) if key is not None else None,
        checkpoint_every=spec["checkpoint_every"],
        checkpoint_seconds=spec["checkpoint_seconds"],
        labels=spec["labels"],
        publish=checkpoints.append if spec["witness"] else None,
    )
    sealer = ChainSealer(sink, options, sinks=[StdoutSink()] if spec["stdout"] else [])
    remote = bool(spec["remote"])
    try:
        while (frame := _read_frame(inbox)) is not None:
            answer: dict[str, Any] = {"ok": True, "items": []}
            try:
                if frame["op"] == "ping":
                    items = []
                elif frame["op"] == "start":
                    items = sealer.start()
                else:
                    if "policy" in frame:
                        policy[0] = frame["policy"]
                    items = sealer.write(frame["entries"], frame["sync"], frame["checkpoint"])
                if remote:
                    answer["items"] = [(seq, line.decode()) for seq, line in items]
            except Exception as exc:
                log.exception("decision log write failed")
                answer = {"ok": False, "error": str(exc), "items": []}
            head = sealer.head
            answer["head"] = (head.seq, head.hash, head.last_checkpoint, head.since_checkpoint)
            answer["until"] = sealer.until_checkpoint()
            answer["syncs"] = sealer.syncs
            answer["checkpoints"] = [line.rstrip(b"\n").decode() for line in checkpoints]
            checkpoints.clear()
            body = orjson.dumps(answer)
            outbox.write(_LENGTH.pack(len(body)) + body)
            outbox.flush()
    except BrokenPipeError:
        pass  # the worker is gone: what was written is in the file
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
