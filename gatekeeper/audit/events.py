"""Decision events: one per request, in a layout OPA decision-log consumers can read.

OPA's ``EventV1`` keys (``labels``, ``decision_id``, ``bundles``, ``path``, ``input``,
``result``, ``requested_by``, ``timestamp``, ``metrics``, ``erased``, ``masked``, ``error``)
carry their OPA meaning; everything gatekeeper adds lives under the ``gatekeeper`` key: ``kind``
(``decision``), the chain fields (``seq``, ``prev_hash``, added when the event is written) and
``enforcement`` (the status sent, quota state, reasoning shaping, upstream status, latency).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gatekeeper._version import __version__

EVENT_VERSION = 1
DECISION_PATH = "gatekeeper/decision"
_INSTANCE_ID = str(uuid.uuid4())


#: The last whole second ``rfc3339_ns`` formatted, and its text: events come many a second.
#: One tuple, replaced whole, so threads (the log's writer formats too) never see it half set.
_last_second: tuple[int, str] = (-1, "")


def rfc3339_ns(unix_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, trailing zeros trimmed (Go's formatting, as OPA writes)."""
    global _last_second
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    last, stamp = _last_second
    if seconds != last:
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, stamp)
    if nanos:
        return f"{stamp}.{nanos:09d}".rstrip("0") + "Z"
    return stamp + "Z"


#: Random bytes read at once for decision ids: 256 ids per ``os.urandom`` call.
_ID_POOL_BYTES = 4096
#: Each thread's ids (a generator is never run by two threads at once); reset in a forked child.
_ids = threading.local()


def _random_ids() -> Iterator[str]:
    """Version 4 UUIDs as ``str(uuid.uuid4())`` writes them (the same randomness, from
    ``os.urandom``), read ``_ID_POOL_BYTES`` at a time."""
    while True:
        pool = bytearray(os.urandom(_ID_POOL_BYTES))
        for at in range(0, _ID_POOL_BYTES, 16):
            pool[at + 6] = (pool[at + 6] & 0x0F) | 0x40  # version 4
            pool[at + 8] = (pool[at + 8] & 0x3F) | 0x80  # RFC 4122 variant
            text = pool[at : at + 16].hex()
            yield f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_decision_id() -> str:
    """A random (version 4) UUID for a decision. One ``os.urandom`` system call per id, as
    ``uuid.uuid4`` makes, cost 11-18 µs on the request path (measured around the call over
    5,000 requests of ``bench.profile``'s stack); one per 256 ids costs a fraction of that."""
    ids: Iterator[str] | None = getattr(_ids, "ids", None)
    if ids is None:
        ids = _ids.ids = _random_ids()
    return next(ids)


def _forget_ids() -> None:
    """In a forked child: never hand out ids from the parent's pool."""
    global _ids
    _ids = threading.local()


os.register_at_fork(after_in_child=_forget_ids)


@dataclass(slots=True)
class DecisionRecord:
    """Everything known about one request's decision, filled in as the request proceeds."""

    decision_id: str
    unix_ns: int = field(default_factory=time.time_ns)
    path: str = ""
    method: str = ""
    requested_by: str | None = None
    revision: str | None = None
    input: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    decided_by: str = "policy"
    status: int | None = None
    quotas: list[dict[str, Any]] = field(default_factory=list)
    reasoning: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    metrics: dict[str, int] = field(default_factory=dict)
    started_ns: int = field(default_factory=time.perf_counter_ns)
    erased: list[str] = field(default_factory=list)
    upstream_status: int | None = None
    #: Reverse-proxy mode: why the upstream gave no (whole) response, e.g. upstream_timeout.
    upstream_error: str | None = None
    #: The route is durable: the response waited for this event to be fsynced.
    durable: bool = False
    #: Set once the event has been handed to the decision log, so it is never logged twice.
    logged: bool = False
    #: Forwarding headers that were not honoured: ``{"spoofed": …, "malformed": …, "peer": …}``
    #: (docs/security.md, "The client's address"); None when there was nothing to flag.
    forwarding: dict[str, Any] | None = None
    #: Shared-intelligence indicators that matched the request (``input.signals.indicators``):
    #: ``[{"id", "kind", "source"}]``; named in the event even where the input is masked.
    indicators: list[dict[str, Any]] = field(default_factory=list)

    def to_event(self, labels: dict[str, str]) -> dict[str, Any]:
        """The decision event (a plain JSON-serialisable dict)."""
        event: dict[str, Any] = {
            "labels": base_labels(labels),
            "decision_id": self.decision_id,
            "path": DECISION_PATH,
            "timestamp": rfc3339_ns(self.unix_ns),
        }
        if self.revision is not None:
            event["bundles"] = {"gatekeeper": {"revision": self.revision}}
        if self.input is not None:
            event["input"] = self.input
        if self.result is not None:
            event["result"] = self.result
        if self.requested_by:
            event["requested_by"] = self.requested_by
        if self.erased:
            event["erased"] = list(self.erased)
        if self.error is not None:
            event["error"] = self.error
        event["metrics"] = dict(self.metrics)
        event["gatekeeper"] = {
            "kind": "decision",
            "version": EVENT_VERSION,
            "decided_by": self.decided_by,
            "request": {"method": self.method, "path": self.path},
            "enforcement": {
                "status": self.status,
                "quotas": quota_states(self.quotas, self.result) if self.quotas else [],
                "reasoning": self.reasoning,
                "latency_ns": time.perf_counter_ns() - self.started_ns,
            },
        }
        if self.forwarding is not None:
            event["gatekeeper"]["request"]["forwarding"] = self.forwarding
        if self.indicators:
            event["gatekeeper"]["indicators"] = self.indicators
        enforcement = event["gatekeeper"]["enforcement"]
        if self.upstream_status is not None or self.upstream_error is not None:
            enforcement["upstream_status"] = self.upstream_status
            if self.upstream_error is not None:
                enforcement["upstream_error"] = self.upstream_error
        if self.durable:
            enforcement["durable"] = True
        return event


def quota_states(
    states: list[dict[str, Any]], result: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """``enforcement.quotas`` as logged: each state without the ``key`` and ``capacity`` that
    the result's first quota of the same name already says (``result.quotas``, the decision's
    own copy: a quota's state names it by ``name``); an integral ``remaining`` as an integer
    (the same canonical JSON, without the writer's work of cutting its ``.0``). The record's
    own states are left as they are."""
    specs = result.get("quotas") if result is not None else None
    by_name: dict[Any, tuple[Any, Any]] = {}
    if type(specs) is list:
        for spec in reversed(specs):  # the first of a name wins
            if type(spec) is dict:
                by_name[spec.get("name")] = (spec.get("key"), spec.get("capacity"))
    logged = []
    for state in states:
        state = state.copy()
        said = by_name.get(state.get("name"))
        if said is not None and "key" in state and said == (state["key"], state.get("capacity")):
            del state["key"]
            state.pop("capacity", None)
        remaining = state.get("remaining")
        if type(remaining) is float and remaining.is_integer() and -(2**53) < remaining < 2**53:
            state["remaining"] = int(remaining)
        logged.append(state)
    return logged


#: The configured labels ``base_labels`` last saw, and its answer for them (a copy is handed out).
_last_labels: tuple[dict[str, str], str, dict[str, str]] = ({}, "", {})


def base_labels(labels: dict[str, str]) -> dict[str, str]:
    """OPA's ``labels``: this process's random ``id``, the ``version``, then configured ones."""
    global _last_labels
    version = os.environ.get("GATEKEEPER_VERSION_LABEL", __version__)
    seen, seen_version, merged = _last_labels
    if seen_version != version or seen != labels:
        merged = {"id": _INSTANCE_ID, "version": version, **labels}
        _last_labels = (dict(labels), version, merged)
    return dict(merged)
