"""The hash chain and its signed checkpoints.

Every entry of the log (decision events, and the log's own ``start``, ``restart``, ``gap``,
``withheld`` and ``checkpoint`` entries) carries, under its ``gatekeeper`` key:

- ``kind``: what the entry is (``decision`` for request events);
- ``seq``: its sequence number, 1 for the first entry of a log, +1 for each entry after;
- ``prev_hash``: the hash of the entry before it (``GENESIS_HASH`` for seq 1): SHA-256 over the
  exact bytes of its line;
- ``format``: the line format (``gatekeeper.audit.canonical.FORMAT``; absent in format 1).

The ``start`` and ``restart`` entries name the chain (``chain_id``, random, kept for the chain's
whole life) and say how often the writer signs (``checkpoint_every``, ``checkpoint_seconds``), so
the verifier knows how long an unsigned tail may be.

A checkpoint entry signs the chain head, the entry just before it::

    "checkpoint": {"head_seq": 41, "head_hash": "sha256:…",
                   "previous": {"seq": 20, "hash": "sha256:…"} | null,
                   "chain_id": "…", "key": "ed25519:…",
                   "reason": "interval" | "timer" | "rotation" | "shutdown",
                   "signed_at": "<RFC 3339>", "signature": "<base64 Ed25519>"}

The signature covers ``CHECKPOINT_CONTEXT`` followed by the canonical JSON of that object without
``signature``. ``previous`` names the checkpoint before it (its seq and entry hash), so removing a
checkpoint, or everything after one, is detectable; ``chain_id`` ties it to its chain, so a
checkpoint published to a witness (``gatekeeper.audit.witness``) cannot be passed off as
another chain's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatekeeper.audit.canonical import (
    FORMAT,
    GENESIS_HASH,
    MAX_SAFE_INTEGER,
    canonical_json,
    digest,
)
from gatekeeper.audit.events import base_labels, rfc3339_ns
from gatekeeper.audit.keys import Keyring, Signer, signature_is_valid

CHECKPOINT_CONTEXT = b"gatekeeper-checkpoint-v1\n"
KINDS = ("decision", "start", "restart", "gap", "withheld", "checkpoint")


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the chain stands: the last entry's seq and hash, and the last checkpoint."""

    seq: int = 0
    hash: str = GENESIS_HASH
    last_checkpoint: dict[str, Any] | None = None
    since_checkpoint: int = 0


class Chain:
    """Assigns sequence numbers and previous hashes, one entry after another."""

    def __init__(self, head: ChainHead | None = None, chain_id: str | None = None) -> None:
        self.head = head or ChainHead()
        #: The chain's name in its checkpoints (set when the writer opens the log).
        self.chain_id = chain_id or str(uuid.uuid4())

    def seal(self, entry: dict[str, Any], finish: Callable[[bytes], bool] | None = None) -> bytes:
        """Chain ``entry`` (adding its chain fields) and return its canonical JSON.

        ``finish`` (the masker's last step) is given that JSON before it is hashed; when it
        returns True it changed the entry, whose JSON is made again. So the line is made once
        for an entry that needs no change, which is nearly every one.

        Raises ``NotCanonicalizable`` (or what ``finish`` raises) without changing the chain
        when the entry cannot be written.
        """
        gk = entry.get("gatekeeper")
        if not isinstance(gk, dict):
            gk = entry["gatekeeper"] = {}
        gk.setdefault("kind", "decision")
        gk["seq"] = self.head.seq + 1
        gk["prev_hash"] = self.head.hash
        gk["format"] = FORMAT
        _time_as_string(entry)
        line = canonical_json(entry)
        if finish is not None and finish(line):
            line = canonical_json(entry)
        entry_hash = digest(line)
        if gk["kind"] == "checkpoint":
            self.head = ChainHead(gk["seq"], entry_hash, {"seq": gk["seq"], "hash": entry_hash}, 0)
        else:
            head = self.head
            self.head = ChainHead(
                gk["seq"], entry_hash, head.last_checkpoint, head.since_checkpoint + 1
            )
        return line


def _time_as_string(entry: dict[str, Any]) -> None:
    """The request's arrival in nanoseconds (``input.time.unix_ns``) is beyond the integers a
    JSON number holds exactly: write it as a string, as the canonical form would, but without
    its slower general path. The input is shared with the request: copied, not changed."""
    inp = entry.get("input")
    if type(inp) is dict:
        when = inp.get("time")
        if type(when) is dict:
            ns = when.get("unix_ns")
            if type(ns) is int and not -MAX_SAFE_INTEGER <= ns <= MAX_SAFE_INTEGER:
                entry["input"] = {**inp, "time": {**when, "unix_ns": str(ns)}}


def log_entry(kind: str, labels: dict[str, str], **payload: Any) -> dict[str, Any]:
    """An entry the log writes about itself (``start``, ``restart``, ``gap``, ``withheld``…)."""
    return {
        "labels": base_labels(labels),
        "decision_id": str(uuid.uuid4()),
        "timestamp": rfc3339_ns(time.time_ns()),
        "gatekeeper": {"kind": kind, kind: payload},
    }


def checkpoint_entry(
    head: ChainHead, signer: Signer, reason: str, labels: dict[str, str], chain_id: str
) -> dict[str, Any]:
    """A checkpoint entry signing ``head`` (to be sealed as the very next entry)."""
    body: dict[str, Any] = {
        "head_seq": head.seq,
        "head_hash": head.hash,
        "previous": head.last_checkpoint,
        "chain_id": chain_id,
        "key": signer.fingerprint,
        "reason": reason,
        "signed_at": rfc3339_ns(time.time_ns()),
    }
    body["signature"] = signer.sign(signing_message(body))
    return log_entry("checkpoint", labels, **body)


def signing_message(body: dict[str, Any]) -> bytes:
    """The bytes a checkpoint signature covers."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return CHECKPOINT_CONTEXT + canonical_json(unsigned)


def checkpoint_problem(entry: dict[str, Any], keyring: Keyring) -> tuple[str, str] | None:
    """``(kind, detail)`` when a checkpoint entry is not correctly signed, else ``None``.

    ``kind`` is ``unknown_key`` (no trusted public key has its fingerprint) or
    ``bad_signature``. Whether it signs the right head is checked by the verifier.
    """
    body = entry.get("gatekeeper", {}).get("checkpoint")
    if not isinstance(body, dict):
        return "modified", "a checkpoint entry without its checkpoint"
    fp = body.get("key")
    key = keyring.get(fp) if isinstance(fp, str) else None
    if key is None:
        return "unknown_key", f"no trusted public key has fingerprint {fp}"
    signature = body.get("signature")
    if not isinstance(signature, str) or not signature_is_valid(
        key, signing_message(body), signature
    ):
        return "bad_signature", f"the signature does not verify with key {fp}"
    return None
