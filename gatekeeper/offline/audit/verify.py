"""Verifying a decision log: the hash chain, the checkpoint signatures, and the sidecar.

The walk follows the entries in chain order and stops at the first problem, naming the first bad
sequence number and what is wrong:

- ``modified``: an entry's content no longer matches the hash its successor recorded (or its
  checkpoint, or its copy in the checkpoint sidecar), or it is not readable JSON;
- ``missing``: entries are absent (the next one present has a higher seq);
- ``reordered``: an entry appears after one it should precede;
- ``inserted``: an entry that is not part of the chain (a copy, a second entry claiming a seq,
  an event without chain fields);
- ``bad_signature`` / ``unknown_key``: a checkpoint's signature does not verify, or no trusted
  public key has its fingerprint;
- ``truncated``: the sidecar or the witness holds a checkpoint beyond the end of the log:
  entries after it (or up to it) were cut off;
- ``appended``: an entry follows a shutdown checkpoint without a ``restart`` entry (nothing
  is written to a closed log before its next start);
- ``missing_sidecar``: the checkpoint sidecar is gone, or lacks checkpoints the log holds;
- ``open_tail``: the log does not end with a shutdown checkpoint (cut short, or extended past
  its last signature, or still being written: ``allow_open_tail`` accepts a live log, as long
  as its unsigned tail is not longer, nor older, than the writer lets one be);
- ``witness``: a record the witness holds for this chain does not verify.

The hash of an entry is computed over the exact bytes of its line, and each line must be the
canonical form of what it holds (``gatekeeper.audit.canonical``, per ``gatekeeper.format``): a
key added, moved or duplicated, or whitespace changed, fails even when the JSON means the same.

A final line cut short by a crash (no newline, not JSON) is not tampering: it is reported as a
torn tail, apart from problems, and every entry before it is verified as usual.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.audit.canonical import (
    FORMAT,
    GENESIS_HASH,
    NotCanonicalizable,
    canonical_json,
    canonical_json_v1,
    digest,
)
from gatekeeper.audit.chain import checkpoint_problem
from gatekeeper.audit.keys import Keyring
from gatekeeper.offline.audit.reader import LogFiles, Progress, iter_lines

EXIT_OK, EXIT_PROBLEM, EXIT_TORN = 0, 1, 3
_WINDOW = 4096
#: How much older than the checkpoint interval the newest unsigned entry of a live log may be:
#: an entry's timestamp is its request's arrival, and it is written when the request ends.
OPEN_TAIL_GRACE_SECONDS = 60.0
#: The writer's signing policy assumed for logs that do not record theirs (format 1).
DEFAULT_CHECKPOINT_SECONDS = 60.0


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a log."""

    seq: int | None
    kind: str
    detail: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f" ({self.file}:{self.line})" if self.file else ""
        at = f"seq {self.seq}" if self.seq is not None else "log"
        return f"{at}: {self.kind}: {self.detail}{where}"


@dataclass
class VerifyReport:
    """What ``verify`` found."""

    files: list[str] = field(default_factory=list)
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    decisions: int = 0
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    keys: set[str] = field(default_factory=set)
    restarts: int = 0
    gaps: int = 0
    gap_dropped: int = 0
    closed: bool = False
    sidecar_checkpoints: int = 0
    problem: Problem | None = None
    torn_tail: dict[str, Any] | None = None
    #: Entries after the last checkpoint (none when the log ends with one).
    unsigned: int = 0
    #: The chain's ids (from its start/restart entries and checkpoints).
    chain_ids: set[str] = field(default_factory=set)
    #: The witness: its description and how many of this chain's checkpoints it holds.
    witness: str | None = None
    witnessed: int = 0
    witness_last_seq: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.problem is not None:
            return EXIT_PROBLEM
        return EXIT_TORN if self.torn_tail is not None else EXIT_OK

    def summary(self) -> str:
        """A few lines for a reviewer."""
        lines = []
        if self.problem is not None:
            lines.append(f"FAILED at {self.problem}")
        elif self.torn_tail is not None:
            lines.append(
                f"INCOMPLETE: the final line of {self.torn_tail['file']} is cut short "
                f"({self.torn_tail['bytes']} bytes, a crash mid-write); every entry before it "
                "verifies"
            )
        else:
            lines.append("OK: chain and signatures intact")
        span = f"seq {self.first_seq}..{self.last_seq}" if self.entries else "no entries"
        lines.append(
            f"{self.entries} entries ({span}) in {len(self.files)} file(s): "
            f"{self.decisions} decisions, {self.checkpoints} checkpoints, "
            f"{self.restarts} restarts, {self.gaps} gaps ({self.gap_dropped} events dropped)"
        )
        if self.keys:
            lines.append("signed by: " + ", ".join(sorted(self.keys)))
        if self.last_seq is not None and not self.closed and self.problem is None:
            lines.append(
                f"open (no shutdown checkpoint at the end, accepted as a live log): "
                f"{self.unsigned} entries after the last checkpoint (seq "
                f"{self.last_checkpoint_seq}) are not signed yet"
            )
        if self.witness is None and self.chain_ids:
            lines.append(
                "no witness given (--witness): a cut back to an earlier shutdown checkpoint, "
                "sidecar included, would not show"
            )
        if self.witness is not None:
            upto = f", up to seq {self.witness_last_seq}" if self.witnessed else ""
            lines.append(
                f"witness {self.witness}: {self.witnessed} checkpoints of this chain{upto}"
            )
        lines.extend(self.notes)
        return "\n".join(lines)


@dataclass(slots=True)
class _Rec:
    seq: int | None
    prev: Any
    hash: str
    kind: str
    entry: dict[str, Any] | None
    file: str
    line: int
    timestamp: Any = None
    format: Any = None


class _Lookahead:
    def __init__(self, source: Iterator[_Rec | dict[str, Any]]) -> None:
        self._source = source
        self._buffer: deque[_Rec | dict[str, Any]] = deque()

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> _Rec | dict[str, Any]:
        return self._buffer.popleft() if self._buffer else next(self._source)

    def ahead(self, n: int) -> list[_Rec | dict[str, Any]]:
        while len(self._buffer) < n:
            try:
                self._buffer.append(next(self._source))
            except StopIteration:
                break
        return list(self._buffer)[:n]


def verify_log(
    files: LogFiles,
    keyring: Keyring,
    *,
    progress: Progress | None = None,
    partial_start: bool = False,
    allow_open_tail: bool = False,
    witness: tuple[str, list[dict[str, Any]]] | None = None,
    now_ns: int | None = None,
) -> VerifyReport:
    """Verify the log made of ``files``; ``partial_start`` accepts a log whose earlier files
    were archived away (its first entry is trusted as the starting point); ``allow_open_tail``
    accepts a log that does not end with a shutdown checkpoint (a live log) if its unsigned
    tail is no longer and no older than its writer lets one be (by ``now_ns``); ``witness``
    (its description and the records it holds, ``gatekeeper.audit.witness``) is compared with
    the log."""
    report = VerifyReport(files=[str(p) for p in files.entries])
    walk = _Walk(report, keyring, partial_start)
    walk.run(_Lookahead(_records(files.entries, progress)))
    if report.problem is None:
        walk.check_sidecars(files)
    if report.problem is None and witness is not None:
        name = (files.chain or (files.entries[0] if files.entries else Path("?"))).name
        walk.check_witness(name, *witness)
    if report.problem is None:
        walk.check_tail(allow_open_tail, time.time_ns() if now_ns is None else now_ns)
    return report


def _records(paths: Sequence[Path], progress: Progress | None) -> Iterator[_Rec | dict[str, Any]]:
    for line in iter_lines(paths, progress):
        raw = line.raw
        try:
            entry = orjson.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            # A dict marks an unreadable line (the walk decides: torn tail or modified).
            yield {
                "file": line.file.name,
                "line": line.number,
                "raw": raw,
                "last": line.last,
                "terminated": line.terminated,
            }
            continue
        gk = entry.get("gatekeeper")
        gk = gk if isinstance(gk, dict) else {}
        seq = gk.get("seq")
        kind = gk["kind"] if isinstance(gk.get("kind"), str) else "decision"
        fmt = gk.get("format")
        keep = entry if kind != "decision" else None
        if "seq" in gk and not _is_canonical(entry, raw, fmt):
            yield {
                "file": line.file.name,
                "line": line.number,
                "noncanonical": fmt,
                "seq": seq if isinstance(seq, int) else None,
            }
            continue
        yield _Rec(
            seq if isinstance(seq, int) else None,
            gk.get("prev_hash"),
            digest(raw),
            kind,
            keep,
            line.file.name,
            line.number,
            entry.get("timestamp"),
            fmt,
        )


def _is_canonical(entry: dict[str, Any], raw: bytes, fmt: Any) -> bool:
    """Whether ``raw`` is exactly the canonical form of ``entry`` in its format."""
    try:
        if fmt == FORMAT:
            return canonical_json(entry) == raw
        if fmt is None:
            return canonical_json_v1(entry) == raw
    except NotCanonicalizable:
        return False
    return False


class _Walk:
    def __init__(self, report: VerifyReport, keyring: Keyring, partial_start: bool) -> None:
        self.report = report
        self.keyring = keyring
        self.partial_start = partial_start
        self.expected: int | None = None
        self.prev = GENESIS_HASH
        self.last_checkpoint: dict[str, Any] | None = None
        self.checkpoint_hashes: dict[int, str] = {}
        self.seen: dict[int, str] = {}
        self.seen_order: deque[int] = deque()
        self.closed_at: _Rec | None = None  # the last entry was a shutdown checkpoint
        self.format_seen: Any = None
        self.every: int | None = None
        self.seconds: float | None = None
        self.since_signed = 0  # entries since the last checkpoint or restart
        self.tail_stamps: list[Any] = []  # timestamps of the entries after the last checkpoint

    def fail(self, seq: int | None, kind: str, detail: str, rec: _Rec | None = None) -> None:
        self.report.problem = Problem(
            seq, kind, detail, rec.file if rec else None, rec.line if rec else None
        )

    def run(self, records: _Lookahead) -> None:
        for rec in records:
            if isinstance(rec, dict) and "noncanonical" in rec:
                fmt = rec["noncanonical"]
                self.report.problem = Problem(
                    rec["seq"],
                    "modified",
                    "the line is not the canonical form of what it holds "
                    f"(format {fmt or 1}): a key was added, duplicated or moved, or its "
                    "spacing changed"
                    if fmt in (None, FORMAT)
                    else f"unknown line format {fmt!r}",
                    rec["file"],
                    rec["line"],
                )
                return
            if isinstance(rec, dict):
                if rec["last"] and not rec["terminated"]:
                    self.report.torn_tail = {
                        "file": rec["file"],
                        "line": rec["line"],
                        "bytes": len(rec["raw"]),
                    }
                else:
                    self.report.problem = Problem(
                        self.expected,
                        "modified",
                        "the line is not a readable entry",
                        rec["file"],
                        rec["line"],
                    )
                return
            if not self.check(rec, records) or not self.accept(rec):
                return

    def check(self, rec: _Rec, records: _Lookahead) -> bool:
        if rec.seq is None:
            self.fail(self.expected, "inserted", "an entry without chain fields", rec)
            return False
        if self.format_seen == FORMAT and rec.format != FORMAT:
            self.fail(rec.seq, "modified", "a format-1 line after format-2 lines", rec)
            return False
        if self.closed_at is not None and rec.kind != "restart":
            self.fail(
                rec.seq,
                "appended",
                f"an entry follows the shutdown checkpoint (seq {self.closed_at.seq}) without a "
                "restart entry: nothing is written to a closed log before its next start",
                rec,
            )
            return False
        if self.expected is None:
            if self.partial_start:
                self.expected, self.prev = rec.seq, rec.prev
            elif rec.seq != 1 or rec.prev != GENESIS_HASH:
                self.fail(
                    1,
                    "missing",
                    f"the log starts at seq {rec.seq}; seq 1.."
                    f"{rec.seq - 1} are not in the files given",
                    rec,
                )
                return False
            else:
                self.expected = 1
        expected = self.expected
        if rec.seq == expected and rec.prev == self.prev:
            return True
        if rec.seq == expected:
            nxt = records.ahead(1)
            if (
                nxt
                and isinstance(nxt[0], _Rec)
                and nxt[0].seq == expected
                and nxt[0].prev == self.prev
            ):
                self.fail(
                    expected,
                    "inserted",
                    "an entry that is not part of the chain "
                    f"claims seq {expected}; the genuine one follows it",
                    rec,
                )
            elif rec.prev in self.seen.values():
                self.fail(
                    expected,
                    "reordered",
                    f"the entry links to an earlier entry than seq {expected - 1}",
                    rec,
                )
            else:
                self.fail(
                    expected - 1,
                    "modified",
                    f"entry {expected - 1} does not match the "
                    f"hash that entry {expected} recorded for it",
                    rec,
                )
        elif rec.seq > expected:
            later = [r for r in records.ahead(_WINDOW) if isinstance(r, _Rec)]
            if rec.prev == self.prev:
                self.fail(
                    expected, "modified", f"its sequence number was changed to {rec.seq}", rec
                )
            elif any(r.seq == expected for r in later):
                self.fail(expected, "reordered", f"seq {expected} comes after seq {rec.seq}", rec)
            else:
                gone = (
                    f"seq {expected}"
                    if rec.seq == expected + 1
                    else f"seq {expected}..{rec.seq - 1}"
                )
                self.fail(
                    expected, "missing", f"{gone} absent; the next entry is seq {rec.seq}", rec
                )
        elif self.seen.get(rec.seq) == rec.hash:
            self.fail(
                rec.seq, "inserted", f"a copy of entry {rec.seq} follows entry {expected - 1}", rec
            )
        elif rec.seq in self.seen:
            self.fail(rec.seq, "inserted", f"a second entry claims seq {rec.seq}", rec)
        else:
            self.fail(rec.seq, "reordered", f"seq {rec.seq} comes after seq {expected - 1}", rec)
        return False

    def accept(self, rec: _Rec) -> bool:
        assert rec.seq is not None
        report = self.report
        if rec.kind == "checkpoint" and not self.check_checkpoint(rec):
            return False
        if rec.kind in ("start", "restart") and not self.check_opening(rec):
            return False
        if rec.kind == "restart":
            report.restarts += 1
        elif rec.kind == "gap" and rec.entry is not None:
            report.gaps += 1
            dropped = rec.entry["gatekeeper"].get("gap", {}).get("dropped", 0)
            report.gap_dropped += dropped if isinstance(dropped, int) else 0
        elif rec.kind == "decision":
            report.decisions += 1
        report.entries += 1
        report.first_seq = report.first_seq if report.first_seq is not None else rec.seq
        report.last_seq = rec.seq
        report.closed = (
            rec.kind == "checkpoint"
            and rec.entry is not None
            and rec.entry["gatekeeper"]["checkpoint"].get("reason") == "shutdown"
        )
        self.closed_at = rec if report.closed else None
        self.format_seen = rec.format
        if rec.kind == "checkpoint":
            self.since_signed = 0
            self.tail_stamps.clear()
        else:
            self.since_signed = 0 if rec.kind in ("start", "restart") else self.since_signed + 1
            self.tail_stamps.append(rec.timestamp)
            if len(self.tail_stamps) > 2 * _WINDOW:  # no checkpoints: only the newest matter
                del self.tail_stamps[:_WINDOW]
        self.seen[rec.seq] = rec.hash
        self.seen_order.append(rec.seq)
        if len(self.seen_order) > _WINDOW:
            self.seen.pop(self.seen_order.popleft(), None)
        self.prev = rec.hash
        self.expected = rec.seq + 1
        return True

    def check_opening(self, rec: _Rec) -> bool:
        """A ``start`` or ``restart`` entry: where it says the chain resumes, and the writer's
        signing policy it announces."""
        assert rec.entry is not None and rec.seq is not None
        payload = rec.entry["gatekeeper"].get(rec.kind)
        payload = payload if isinstance(payload, dict) else {}
        if rec.kind == "restart" and rec.seq > 1 and self.expected is not None:
            if payload.get("previous_seq") != rec.seq - 1 or payload.get("previous_hash") != (
                rec.prev
            ):
                self.fail(
                    rec.seq, "modified", "the restart entry does not name the entry before it", rec
                )
                return False
            if rec.format == FORMAT and bool(payload.get("clean_shutdown")) != (
                self.closed_at is not None
            ):
                self.fail(
                    rec.seq,
                    "modified",
                    "the restart entry's clean_shutdown does not match the entry before it",
                    rec,
                )
                return False
        chain_id = payload.get("chain_id")
        if isinstance(chain_id, str):
            self.report.chain_ids.add(chain_id)
        every, seconds = payload.get("checkpoint_every"), payload.get("checkpoint_seconds")
        self.every = every if isinstance(every, int) and every > 0 else None
        self.seconds = float(seconds) if isinstance(seconds, int | float) else None
        return True

    def check_checkpoint(self, rec: _Rec) -> bool:
        assert rec.entry is not None and rec.seq is not None
        problem = checkpoint_problem(rec.entry, self.keyring)
        if problem is not None:
            self.fail(rec.seq, problem[0], problem[1], rec)
            return False
        body = rec.entry["gatekeeper"]["checkpoint"]
        if body.get("head_seq") != rec.seq - 1 or body.get("head_hash") != rec.prev:
            self.fail(rec.seq, "modified", "the checkpoint does not sign the entry before it", rec)
            return False
        if self.last_checkpoint is not None and body.get("previous") != self.last_checkpoint:
            self.fail(
                rec.seq,
                "missing",
                "the checkpoint does not name the previous checkpoint "
                f"(seq {self.last_checkpoint['seq']})",
                rec,
            )
            return False
        self.last_checkpoint = {"seq": rec.seq, "hash": rec.hash}
        self.checkpoint_hashes[rec.seq] = rec.hash
        if isinstance(body.get("chain_id"), str):
            self.report.chain_ids.add(body["chain_id"])
        self.report.checkpoints += 1
        self.report.last_checkpoint_seq = rec.seq
        self.report.keys.add(body["key"])
        return True

    def check_sidecars(self, files: LogFiles) -> None:
        """Every checkpoint of the log is in the sidecar (the last one of a log that did not
        close may not be yet: a crash between the two writes), and none is beyond the log."""
        first, last = self.report.first_seq or 0, self.report.last_seq or 0
        in_sidecar: set[int] = set()
        for path in files.sidecars:
            for line in iter_lines([path]):
                try:
                    entry = orjson.loads(line.raw)
                    seq = entry["gatekeeper"]["seq"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn sidecar line (crash while appending it)
                if not isinstance(seq, int) or seq < first:
                    continue  # before the files given (partial_start)
                self.report.sidecar_checkpoints += 1
                name, number = path.name, line.number
                if seq <= last and self.checkpoint_hashes.get(seq) != digest(line.raw):
                    self.report.problem = Problem(
                        seq,
                        "modified",
                        "the log's entry differs from the checkpoint kept in the sidecar",
                        name,
                        number,
                    )
                    return
                if seq > last:
                    problem = checkpoint_problem(entry, self.keyring)
                    if problem is not None:
                        self.report.problem = Problem(seq, problem[0], problem[1], name, number)
                    else:
                        self.report.problem = Problem(
                            last + 1,
                            "truncated",
                            f"a checkpoint at seq {seq} signs the chain up to seq {seq - 1}, "
                            f"but the log ends at seq {last}",
                            name,
                            number,
                        )
                    return
                in_sidecar.add(seq)
        lacking = sorted(set(self.checkpoint_hashes) - in_sidecar)
        if lacking and not self.report.closed and lacking[-1] == self.report.last_checkpoint_seq:
            lacking.pop()
        if lacking:
            where = "is missing" if not files.sidecars else "lacks checkpoints the log holds"
            self.report.problem = Problem(
                lacking[0],
                "missing_sidecar",
                f"the checkpoint sidecar {where} ({len(lacking)} of "
                f"{len(self.checkpoint_hashes)}, from seq {lacking[0]}): it was cut or deleted",
                files.sidecars[0].name if files.sidecars else None,
            )

    def check_witness(self, name: str, description: str, records: list[dict[str, Any]]) -> None:
        """Compare the log with the checkpoints the witness holds for this chain."""
        report = self.report
        report.witness = description
        ids = report.chain_ids
        mine = [r for r in records if r.get("chain_id") in ids]
        others = {
            r.get("chain_id"): r
            for r in records
            if r.get("chain") == name and r.get("chain_id") not in ids
        }
        if others and ids:
            other = max(others.values(), key=lambda r: r.get("seq") or 0)
            report.problem = Problem(
                None,
                "missing",
                f"the witness holds checkpoints of another chain named {name} (id "
                f"{other.get('chain_id')}, up to seq {other.get('seq')}): not the one in these "
                "files, which was replaced",
            )
            return
        first, last = report.first_seq or 0, report.last_seq or 0
        for record in sorted(mine, key=lambda r: r.get("seq") or 0):
            seq, body = record.get("seq"), record["checkpoint"]
            problem = checkpoint_problem({"gatekeeper": {"checkpoint": body}}, self.keyring)
            if problem is None and (
                not isinstance(seq, int)
                or body.get("head_seq") != seq - 1
                or body.get("chain_id") != record.get("chain_id")
            ):
                problem = ("modified", "its seq or chain does not match its signed body")
            if problem is not None:
                report.problem = Problem(
                    seq if isinstance(seq, int) else None,
                    "witness",
                    f"a record the witness holds does not verify: {problem[1]}",
                )
                return
            assert isinstance(seq, int)
            if seq < first:
                continue
            report.witnessed += 1
            report.witness_last_seq = seq
            if seq > last:
                report.problem = Problem(
                    last + 1,
                    "truncated",
                    f"the witness holds a checkpoint at seq {seq} (signed at "
                    f"{body.get('signed_at')}), but the log ends at seq {last}",
                )
                return
            if self.checkpoint_hashes.get(seq) != record.get("hash"):
                report.problem = Problem(
                    seq,
                    "modified",
                    f"the log's entry at seq {seq} is not the checkpoint the witness holds",
                )
                return
        if not mine:
            report.notes.append(f"the witness holds no checkpoint of this chain ({name})")

    def check_tail(self, allow_open_tail: bool, now_ns: int) -> None:
        """A log must end with a shutdown checkpoint, unless it is live (``allow_open_tail``)
        and its unsigned tail is neither longer nor older than its writer lets one be."""
        report = self.report
        if report.last_seq is None or report.closed:
            return
        report.unsigned = report.last_seq - (
            report.last_checkpoint_seq or (report.first_seq or 1) - 1
        )
        where = (
            f"after the last checkpoint (seq {report.last_checkpoint_seq})"
            if report.last_checkpoint_seq is not None
            else "and no checkpoint at all"
        )
        if not allow_open_tail:
            report.problem = Problem(
                report.last_seq,
                "open_tail",
                f"the log does not end with a shutdown checkpoint: {report.unsigned} entries "
                f"{where} are not signed; it was cut short, extended, or is still being "
                "written (--allow-open-tail for a live log)",
            )
            return
        if self.every is not None and self.since_signed > self.every:
            report.problem = Problem(
                report.last_seq,
                "open_tail",
                f"{self.since_signed} entries {where} are not signed, but the writer signs "
                f"every {self.every}: entries were appended",
            )
            return
        seconds = self.seconds if self.seconds is not None else DEFAULT_CHECKPOINT_SECONDS
        newest = max((ns for ns in map(_unix_ns, self.tail_stamps) if ns is not None), default=None)
        if seconds and newest is not None:
            age = (now_ns - newest) / 1e9
            if age > seconds + OPEN_TAIL_GRACE_SECONDS:
                report.problem = Problem(
                    report.last_seq,
                    "open_tail",
                    f"the newest of the {report.unsigned} unsigned entries {where} is "
                    f"{age:.0f} s old; a live writer signs within {seconds:g} s: the log was "
                    "cut short, extended, or its writer stopped without signing",
                )


def _unix_ns(stamp: Any) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 UTC timestamp (``…Z``), or ``None``."""
    if not isinstance(stamp, str) or not stamp.endswith("Z"):
        return None
    main, _, fraction = stamp[:-1].partition(".")
    try:
        seconds = datetime.fromisoformat(main + "+00:00").timestamp()
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
    except ValueError:
        return None
    return int(seconds) * 1_000_000_000 + nanos
