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
- ``truncated``: the sidecar holds a checkpoint beyond the end of the log: entries after it
  (or up to it) were cut off.

A final line cut short by a crash (no newline, not JSON) is not tampering: it is reported as a
torn tail, apart from problems, and every entry before it is verified as usual.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gatekeeper.audit.canonical import GENESIS_HASH, NotCanonicalizable, entry_hash
from gatekeeper.audit.chain import checkpoint_problem
from gatekeeper.audit.keys import Keyring
from gatekeeper.audit.reader import LogFiles, Progress, iter_lines

EXIT_OK, EXIT_PROBLEM, EXIT_TORN = 0, 1, 3
_WINDOW = 4096


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
        if self.last_seq is not None and not self.closed:
            since = self.last_seq - (self.last_checkpoint_seq or 0)
            lines.append(
                f"open (no shutdown checkpoint at the end): {since} entries after the last "
                f"checkpoint (seq {self.last_checkpoint_seq}) are not signed yet"
            )
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
) -> VerifyReport:
    """Verify the log made of ``files``; ``partial_start`` accepts a log whose earlier files
    were archived away (its first entry is trusted as the starting point)."""
    report = VerifyReport(files=[str(p) for p in files.entries])
    walk = _Walk(report, keyring, partial_start)
    walk.run(_Lookahead(_records(files.entries, progress)))
    if report.problem is None:
        walk.check_sidecars(files.sidecars)
    return report


def _records(paths: Sequence[Path], progress: Progress | None) -> Iterator[_Rec | dict[str, Any]]:
    for line in iter_lines(paths, progress):
        try:
            entry = orjson.loads(line.raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
            digest = entry_hash(entry)
        except (ValueError, NotCanonicalizable):
            # A dict marks an unreadable line (the walk decides: torn tail or modified).
            yield {
                "file": line.file.name,
                "line": line.number,
                "raw": line.raw,
                "last": line.last,
                "terminated": line.terminated,
            }
            continue
        gk = entry.get("gatekeeper")
        gk = gk if isinstance(gk, dict) else {}
        seq = gk.get("seq")
        kind = gk["kind"] if isinstance(gk.get("kind"), str) else "decision"
        keep = entry if kind != "decision" else None
        yield _Rec(
            seq if isinstance(seq, int) else None,
            gk.get("prev_hash"),
            digest,
            kind,
            keep,
            line.file.name,
            line.number,
        )


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

    def fail(self, seq: int | None, kind: str, detail: str, rec: _Rec | None = None) -> None:
        self.report.problem = Problem(
            seq, kind, detail, rec.file if rec else None, rec.line if rec else None
        )

    def run(self, records: _Lookahead) -> None:
        for rec in records:
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
        self.seen[rec.seq] = rec.hash
        self.seen_order.append(rec.seq)
        if len(self.seen_order) > _WINDOW:
            self.seen.pop(self.seen_order.popleft(), None)
        self.prev = rec.hash
        self.expected = rec.seq + 1
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
        self.report.checkpoints += 1
        self.report.last_checkpoint_seq = rec.seq
        self.report.keys.add(body["key"])
        return True

    def check_sidecars(self, sidecars: list[Path]) -> None:
        first, last = self.report.first_seq or 0, self.report.last_seq or 0
        for path in sidecars:
            for line in iter_lines([path]):
                try:
                    entry = orjson.loads(line.raw)
                    seq = entry["gatekeeper"]["seq"]
                    digest = entry_hash(entry)
                except (ValueError, KeyError, TypeError, NotCanonicalizable):
                    continue  # a torn sidecar line (crash while appending it)
                if not isinstance(seq, int) or seq < first:
                    continue  # before the files given (partial_start)
                self.report.sidecar_checkpoints += 1
                name, number = path.name, line.number
                if seq <= last and self.checkpoint_hashes.get(seq) != digest:
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
