"""Sealing: the part of the decision log that owns the chain and writes it.

A ``Sealer`` takes batches of entries (decision events and the log's own ``gap`` entries) and
masks, seals (seq + previous hash), signs checkpoints, writes and, when asked, fsyncs them; it
returns the sealed entries for the remote sinks. ``ChainWriter`` (``gatekeeper.audit.writer``)
calls it from its writer thread, one batch at a time, and never from two threads at once.

Two sealers implement the protocol:

- ``ChainSealer`` (here) does the work where it is called: in the writer thread, under the
  event loop's interpreter lock (``audit.sealer = "thread"``);
- ``ProcessSealer`` (``gatekeeper.audit.process``) hands each batch to a writer *process* of
  its own, which runs a ``ChainSealer`` (``audit.sealer = "process"``): masking, canonical
  JSON, hashing, signing, writing and fsync no longer take the event loop's interpreter lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from gatekeeper.audit.canonical import FORMAT
from gatekeeper.audit.chain import Chain, ChainHead, checkpoint_entry, log_entry
from gatekeeper.audit.events import rfc3339_ns
from gatekeeper.audit.keys import Signer
from gatekeeper.audit.masking import Masker, MaskRule
from gatekeeper.audit.remote import Item
from gatekeeper.audit.sinks import ChainStore, JsonlFileSink, Recovered, Sink

log = logging.getLogger("gatekeeper.audit")


class SealerStopped(RuntimeError):
    """The sealer can write nothing more (its writer process has ended)."""


class Sealer(Protocol):
    """What ``ChainWriter`` needs of the part that owns the chain (see the module docstring).

    ``start`` and ``write`` raise on a failed write (nothing of the batch is in the log, and
    the chain head is where it was) and ``SealerStopped`` when nothing can be written any
    more."""

    @property
    def head(self) -> ChainHead: ...

    def prepare(self) -> None:
        """Get ready to start without writing anything (the writer process boots)."""
        ...

    def start(self) -> list[Item]:
        """Recover the chain from the sink and write its ``start`` or ``restart`` entry."""
        ...

    def write(
        self, entries: list[dict[str, Any]], sync: bool, checkpoint: str | None
    ) -> list[Item]:
        """Mask, seal and write ``entries`` (fsync if ``sync``), then sign a ``checkpoint``
        (its reason) if one is asked for; the sealed entries, for the remote sinks."""
        ...

    def until_checkpoint(self) -> float | None:
        """Seconds until a timer checkpoint is due (``None``: none is)."""
        ...

    def watch(self, stopped: Callable[[], None]) -> None:
        """Have ``stopped`` called (from any thread) if the sealer ends on its own."""
        ...

    def stop(self) -> None:
        """After the last write: let go of what the sealer runs (its process)."""
        ...


#: Publishes one checkpoint line to the witness (``gatekeeper.audit.witness``); never blocks.
Publish = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class SealOptions:
    """How the chain is sealed, the same wherever it is: ``DecisionLog`` takes them one by one
    and hands them on to its sealer, ``ChainSealer`` seals with them, ``ProcessSealer`` sends
    them to its writer process, which seals with them in a ``ChainSealer`` of its own."""

    masker: Masker | None = None
    #: Signs checkpoints; none without it.
    signer: Signer | None = None
    #: A checkpoint after this many entries…
    checkpoint_every: int = 1000
    #: …or this many seconds after the last one, when entries came since (0: never).
    checkpoint_seconds: float = 60.0
    #: Added to the log's own entries (``start``, ``restart``, checkpoints).
    labels: dict[str, str] = field(default_factory=dict)
    publish: Publish | None = None


class ChainSealer:
    """Masks, seals, signs and writes, where it is called (see the module docstring)."""

    def __init__(self, sink: Sink, options: SealOptions, *, sinks: Sequence[Sink] = ()) -> None:
        self.sink = sink
        #: Every local sink, the chain's own first.
        self.sinks = [sink, *sinks]
        self.options = options
        self._chain = Chain()
        self._last_checkpoint_at = time.monotonic()
        #: fsyncs of the chain's file so far (a durable event or a checkpoint asked for one).
        self.syncs = 0

    @property
    def head(self) -> ChainHead:
        """The chain head: the last written entry's seq and hash."""
        return self._chain.head

    def watch(self, stopped: Callable[[], None]) -> None:
        return None  # it runs in the caller's thread: it ends with it

    def prepare(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def until_checkpoint(self) -> float | None:
        every = self.options.checkpoint_seconds
        if self.options.signer is None or not every or not self.head.since_checkpoint:
            return None
        return max(0.0, self._last_checkpoint_at + every - time.monotonic())

    def start(self) -> list[Item]:
        return self.write(self._opening_entries(), False, None)

    def write(
        self, entries: list[dict[str, Any]], sync: bool, checkpoint: str | None
    ) -> list[Item]:
        masker, signed = self.options.masker, self.options.signer is not None
        store = self.sink if isinstance(self.sink, ChainStore) else None
        lines: list[bytes] = []
        items: list[Item] = []
        checkpoints: list[bytes] = []
        if entries and store is not None and store.rotation_due():
            # Each rotated file ends with a checkpoint: it can be archived as a sealed unit.
            if signed and self.head.since_checkpoint:
                snapshot = self._chain.head
                self._seal_checkpoint("rotation", lines, items, checkpoints)
                self._store_lines(lines, True, checkpoints, snapshot)
                lines, checkpoints = [], []
            store.rotate()
        snapshot = self._chain.head
        rules = masker.batch_rules() if masker is not None and entries else []
        for entry in entries:
            try:
                line = mask_and_seal(self._chain, masker, entry, rules)
            except Exception as exc:  # never write an event that could not be masked or encoded
                line = self._chain.seal(unwritable(entry, exc))
            lines.append(line + b"\n")
            items.append((self.head.seq, line))
            if signed and self.head.since_checkpoint >= self.options.checkpoint_every:
                self._seal_checkpoint("interval", lines, items, checkpoints)
        # A shutdown checkpoint is written even right after another one: it marks a clean
        # close, which the next start and the verifier report.
        if (
            checkpoint is not None
            and signed
            and (self.head.since_checkpoint or checkpoint == "shutdown")
        ):
            self._seal_checkpoint(checkpoint, lines, items, checkpoints)
        self._store_lines(lines, sync, checkpoints, snapshot)
        return items

    def _seal_checkpoint(
        self, reason: str, lines: list[bytes], items: list[Item], checkpoints: list[bytes]
    ) -> None:
        signer, labels = self.options.signer, self.options.labels
        assert signer is not None
        line = self._chain.seal(
            checkpoint_entry(self.head, signer, reason, labels, self._chain.chain_id)
        )
        lines.append(line + b"\n")
        items.append((self.head.seq, line))
        checkpoints.append(line + b"\n")
        self._last_checkpoint_at = time.monotonic()

    def _store_lines(
        self, lines: list[bytes], sync: bool, checkpoints: list[bytes], snapshot: ChainHead
    ) -> None:
        if not lines:
            return
        try:
            self.sink.write_batch(lines)
        except BaseException:
            self._chain.head = snapshot  # nothing of these lines is in the log
            raise
        store = self.sink if isinstance(self.sink, ChainStore) else None
        if store is not None and (sync or checkpoints):
            store.sync()
            self.syncs += 1
            for line in checkpoints:
                store.write_checkpoint(line)
        publish = self.options.publish
        if publish is not None:
            for line in checkpoints:
                publish(line.rstrip(b"\n"))
        for extra in self.sinks[1:]:
            try:
                extra.write_batch(lines)
            except Exception:
                log.exception("decision log sink %s failed", type(extra).__name__)

    def _opening_entries(self) -> list[dict[str, Any]]:
        """Recover the chain from disk; the ``start`` or ``restart`` entry to write first."""
        options, labels = self.options, self.options.labels
        signed = options.signer is not None
        key = options.signer.fingerprint if options.signer is not None else None
        policy = {
            "chain_id": self._chain.chain_id,
            "format": FORMAT,
            "checkpoint_every": options.checkpoint_every if signed else None,
            "checkpoint_seconds": options.checkpoint_seconds if signed else None,
        }
        try:
            found = self.sink.recover() if isinstance(self.sink, ChainStore) else Recovered()
        except Exception as exc:
            log.exception("could not read the end of the decision log; starting a new chain")
            return [log_entry("start", labels, key=key, recovery_error=str(exc), **policy)]
        last = found.last_entry
        gk = last.get("gatekeeper") if last is not None else None
        if not isinstance(gk, dict) or not isinstance(gk.get("seq"), int):
            extra = {"unchained_predecessor": True} if last is not None else {}
            return [
                log_entry("start", labels, key=key, torn_tail=found.torn_tail, **extra, **policy)
            ]
        assert found.last_hash is not None
        if found.chain_id is not None:
            self._chain.chain_id = policy["chain_id"] = found.chain_id
        if found.checkpoint_line is not None and options.publish is not None:
            options.publish(found.checkpoint_line)  # again: a crash may have kept it from it
        clean = gk.get("kind") == "checkpoint" and gk["checkpoint"].get("reason") == "shutdown"
        self._chain.head = ChainHead(
            seq=gk["seq"],
            hash=found.last_hash,
            last_checkpoint=found.last_checkpoint,
            since_checkpoint=0 if gk.get("kind") == "checkpoint" else 1,
        )
        return [
            log_entry(
                "restart",
                labels,
                previous_seq=gk["seq"],
                previous_hash=found.last_hash,
                clean_shutdown=clean,
                torn_tail=found.torn_tail,
                key=key,
                **policy,
            )
        ]


def mask_and_seal(
    chain: Chain, masker: Masker | None, entry: dict[str, Any], rules: Sequence[MaskRule]
) -> bytes:
    """Mask ``entry`` with ``rules`` (``Masker.batch_rules``) and seal it into ``chain``; its
    line. The rules first; the secret-field scan and the field cap then look at the line the
    chain makes (one serialisation, made again only for an entry they change).

    Only decision events are masked: the log's own entries (``start``, ``restart``, ``gap``,
    ``withheld``) hold nothing of a request, and the field cap would cut the 71-character
    hashes they carry (a ``restart``'s ``previous_hash``) when ``audit.max_field_chars`` is
    below that, breaking the chain they continue."""
    gk = entry.get("gatekeeper")
    if masker is None or (type(gk) is dict and gk.get("kind", "decision") != "decision"):
        return chain.seal(entry)
    masked = masker.apply_rules(entry, rules)
    return chain.seal(entry, partial(masker.scan, entry, masked=masked))


def chain_name(sink: Sink) -> str:
    """The name a witness record gives the chain written to ``sink``."""
    return sink.path.name if isinstance(sink, JsonlFileSink) else "decisions"


def unwritable(entry: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """What is logged in place of an event that cannot be written as JSON."""
    return {
        "decision_id": str(entry.get("decision_id", "")),
        "timestamp": str(entry.get("timestamp", rfc3339_ns(time.time_ns()))),
        "gatekeeper": {"kind": "decision", "unwritable": str(exc)},
    }
