"""The witness: a second place, which the log's writer cannot rewrite, that keeps every checkpoint.

The log's own directory can be cut back or appended to by whoever can write it, the checkpoint
sidecar included. So every signed checkpoint (a signed tree head: the chain, its seq, the hash
of its line, and the signed body) is also *published* to a witness, in the spirit of RFC 9162's
signed tree heads and CloudTrail's digest files; ``gatekeeper audit verify --witness`` then
compares the log with it: a checkpoint the witness holds and the log does not reach is a cut
tail, however consistent the files look.

A witness is named by one string (setting ``audit.witness``):

- ``redis://[user:password@]host[:port][/db]/<stream key>`` (or ``rediss://``): each record is
  ``XADD``ed to the stream (field ``record``); give the writer a Redis user that may only
  ``XADD`` to it (``+xadd ~<stream key>``), so it can add records but not remove any;
- a file path (or ``file://`` + path): each record is appended as one line and fsynced; put it
  on another volume or host, append-only (``chattr +a``) or writable by the writer's account
  only through a restricted path;
- ``https://…`` (or ``http://``): each record is ``POST``ed as a JSON body (any 2xx is
  success) to a service that keeps it, and a ``GET`` of the same URL returns every record kept,
  as JSON lines (or one JSON array), oldest first.

Publishing happens on a thread of its own, fed by the log's writer thread through a bounded
buffer: it never holds up the writer, let alone a request. Failures are retried with backoff,
counted (``failures``) and logged; records that overflow the buffer are dropped and counted
(``dropped``). Several chains (worker processes) may share one witness: each record names its
chain (``chain_id``, also inside the signed body, and the chain's file name).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from gatekeeper.audit.canonical import canonical_json, digest

log = logging.getLogger("gatekeeper.audit")

_REDIS_SCHEMES = ("redis", "rediss")
_SCHEMES = "redis, rediss, http, https, file"
_FIELD = b"record"


class WitnessError(ValueError):
    """A witness string that names no witness gatekeeper can use."""


class Witness(Protocol):
    """Somewhere checkpoint records are appended and read back."""

    description: str

    def publish(self, record: bytes) -> None: ...

    def records(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


def open_witness(spec: str, *, timeout_seconds: float = 5.0) -> Witness:
    """The witness ``spec`` names (see the module docstring); raises ``WitnessError``."""
    spec = spec.strip()
    if not spec:
        raise WitnessError("an empty witness")
    scheme = urlsplit(spec).scheme.lower()
    if scheme in _REDIS_SCHEMES:
        return RedisWitness(spec, timeout_seconds=timeout_seconds)
    if scheme == "file":
        return FileWitness(Path(unquote(urlsplit(spec).path)))
    if scheme in ("http", "https"):
        return HttpWitness(spec, timeout_seconds=timeout_seconds)
    if "://" in spec:
        raise WitnessError(f"witness {spec!r}: unknown scheme {scheme!r} ({_SCHEMES})")
    return FileWitness(Path(spec))


def check_witness_spec(spec: str) -> str:
    """``spec`` if it names a witness gatekeeper can use (no connection is made)."""
    scheme = urlsplit(spec).scheme.lower()
    if scheme in _REDIS_SCHEMES:
        redis_target(spec)
    elif "://" in spec and scheme not in ("file", "http", "https"):
        raise WitnessError(f"witness {spec!r}: unknown scheme {scheme!r} ({_SCHEMES})")
    elif not spec.strip():
        raise WitnessError("an empty witness")
    return spec


def redis_target(spec: str) -> tuple[str, str]:
    """The connection URL and the stream key of a Redis witness."""
    parts = urlsplit(spec)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments:
        raise WitnessError(f"witness {spec!r}: the URL must end with the stream key (…/<key>)")
    stream = segments[-1]
    db = segments[0] if len(segments) == 2 and segments[0].isdigit() else None
    if len(segments) > 2 or (len(segments) == 2 and db is None):
        raise WitnessError(f"witness {spec!r}: the path must be /<stream key> or /<db>/<key>")
    url = urlunsplit((parts.scheme, parts.netloc, f"/{db}" if db else "", parts.query, ""))
    return url, stream


class FileWitness:
    """Appends each record as one line to a file (fsynced), reads them back in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)

    def publish(self, record: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, record + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> Iterator[bytes]:
        # A missing file is an error, not an empty witness: a mistyped path must not pass.
        with self.path.open("rb") as file:
            for raw in file:
                if raw.strip():
                    yield raw.rstrip(b"\r\n")

    def close(self) -> None:
        return None


class RedisWitness:
    """``XADD``s each record to a Redis stream; reads the stream back with ``XRANGE``."""

    def __init__(self, spec: str, *, timeout_seconds: float = 5.0) -> None:
        from redis import Redis

        url, self.stream = redis_target(spec)
        parts = urlsplit(url)
        self.description = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{self.stream}"
        self._redis = Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )

    def publish(self, record: bytes) -> None:
        self._redis.xadd(self.stream, {_FIELD: record})

    def records(self) -> Iterator[bytes]:
        start = "-"
        while True:
            batch: Any = self._redis.xrange(self.stream, min=start, max="+", count=1000)
            if not batch:
                return
            for entry_id, fields in batch:
                value = fields.get(_FIELD)
                if isinstance(value, bytes):
                    yield value
                last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            start = "(" + last

    def close(self) -> None:
        self._redis.close()


class HttpWitness:
    """``POST``s each record to a URL; a ``GET`` of it returns the records kept."""

    def __init__(self, url: str, *, timeout_seconds: float = 5.0) -> None:
        import httpx

        self.url = url
        parts = urlsplit(url)  # described without its credentials or query: it is logged
        port = f":{parts.port}" if parts.port else ""
        self.description = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        self._client = httpx.Client(
            timeout=timeout_seconds, headers={"content-type": "application/json"}
        )

    def publish(self, record: bytes) -> None:
        response = self._client.post(self.url, content=record)
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"{self.description} answered {response.status_code}")

    def records(self) -> Iterator[bytes]:
        response = self._client.get(self.url)
        if response.status_code != 200:
            raise RuntimeError(f"{self.description} answered {response.status_code}")
        body = response.content.strip()
        if body.startswith(b"["):
            for item in orjson.loads(body):
                yield orjson.dumps(item)
            return
        for raw in body.splitlines():
            if raw.strip():
                yield raw.strip()

    def close(self) -> None:
        self._client.close()


def witness_record(chain: str, checkpoint_line: bytes) -> bytes:
    """The record published for one checkpoint: its chain (id and file name), seq, the hash of
    its line and the signed body, as canonical JSON."""
    entry = orjson.loads(checkpoint_line)
    gk = entry["gatekeeper"]
    body = gk["checkpoint"]
    return canonical_json(
        {
            "chain": chain,
            "chain_id": body.get("chain_id"),
            "seq": gk["seq"],
            "hash": digest(checkpoint_line),
            "checkpoint": body,
        }
    )


def read_witness(witness: Witness) -> list[dict[str, Any]]:
    """Every readable record the witness holds, oldest first (unreadable ones are skipped)."""
    found = []
    for raw in witness.records():
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        # A record of another shape is no checkpoint of any chain (nothing gatekeeper wrote).
        if (
            isinstance(record, dict)
            and isinstance(record.get("checkpoint"), dict)
            and isinstance(record.get("seq"), int)
            and not isinstance(record.get("seq"), bool)
        ):
            found.append(record)
    return found


class WitnessPublisher:
    """Publishes records on a thread of its own; ``submit`` never blocks (see the module
    docstring). ``buffer`` bounds the records waiting; the oldest are dropped beyond it."""

    def __init__(
        self, witness: Witness, *, buffer: int = 10_000, max_backoff_seconds: float = 30.0
    ) -> None:
        self.witness = witness
        self.buffer = buffer
        self.max_backoff_seconds = max_backoff_seconds
        self.published = 0
        self.failures = 0
        self.dropped = 0
        self._pending: deque[bytes] = deque()
        self._busy = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, record: bytes) -> None:
        """Queue ``record`` for publishing (from the log's writer thread)."""
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            self._pending.append(record)
            while len(self._pending) > self.buffer:
                self._pending.popleft()
                self.dropped += 1
                log.error(
                    "decision log witness %s: a checkpoint record was dropped (buffer full)",
                    self.witness.description,
                )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="decision-log-witness", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                record = self._pending[0]
                self._busy = True
            try:
                self.witness.publish(record)
            except Exception as exc:
                self.failures += 1
                delay = min(self.max_backoff_seconds, 0.1 * 2**attempt)
                attempt += 1
                log.warning(
                    "decision log witness %s: publishing a checkpoint failed (%s); retrying in "
                    "%.1f s",
                    self.witness.description,
                    exc,
                    delay,
                )
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                    if self._closing and self._give_up:
                        return
                    self._cond.wait(delay)
                continue
            attempt = 0
            with self._cond:
                if self._pending and self._pending[0] is record:
                    self._pending.popleft()
                self.published += 1
                self._busy = False
                self._cond.notify_all()

    _give_up = False

    def drain(self, seconds: float) -> bool:
        """Wait until every record submitted so far is published (``False`` on timeout)."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, seconds: float) -> None:
        """Publish what is pending (for up to ``seconds``), then stop and close the witness."""
        if not self.drain(seconds):
            log.error(
                "decision log witness %s: %d checkpoint record(s) unpublished at shutdown",
                self.witness.description,
                len(self._pending),
            )
        with self._cond:
            self._closing = True
            self._give_up = True
            self.dropped += len(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(seconds)
        try:
            self.witness.close()
        except Exception:
            log.exception("decision log witness %s: close failed", self.witness.description)
