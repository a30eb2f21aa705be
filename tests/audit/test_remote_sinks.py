"""The Redis Stream sink against a real redis-server, the HTTP sink against a local receiver."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from gatekeeper.audit import (
    DecisionLog,
    HttpUploadSink,
    JsonlFileSink,
    RedisStreamSink,
    Signer,
    canonical_json,
)
from gatekeeper.audit.keys import Keyring
from gatekeeper.offline.audit.reader import find_log_files
from gatekeeper.offline.audit.verify import verify_log
from tests.audit.conftest import decision_event


class Receiver:
    """A local HTTP server that takes OPA decision-log uploads (and can refuse some)."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False) -> None:
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.requests: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append({"path": self.path, "headers": headers})
                if receiver.always_fail or len(receiver.requests) <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.events.extend(json.loads(gzip.decompress(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/logs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=2) as r:
        yield r


def as_log_file(events: list[dict[str, Any]], path: Path) -> Path:
    """The log a receiver rebuilds from parsed events: each line re-canonicalised (RFC 8785
    gives back the exact bytes that were hashed), the checkpoints kept in a sidecar too."""
    path.parent.mkdir(parents=True)
    lines = [canonical_json(e) + b"\n" for e in events]
    path.write_bytes(b"".join(lines))
    path.with_name(f"{path.stem}.checkpoints{path.suffix}").write_bytes(
        b"".join(
            line for e, line in zip(events, lines, strict=True) if "checkpoint" in e["gatekeeper"]
        )
    )
    return path


async def test_http_sink_uploads_opa_batches_and_retries(
    receiver: Receiver, tmp_path: Path, signer: Signer, keyring: Keyring
) -> None:
    sink = HttpUploadSink(receiver.url, flush_seconds=0.05, batch_events=40)
    log = DecisionLog(
        JsonlFileSink(tmp_path / "d.jsonl"), remote=[sink], signer=signer, checkpoint_every=50
    )
    for i in range(120):
        log.record(decision_event(i))
    await log.aclose()
    assert sink.failures >= 2  # the receiver refused the first uploads: they were retried
    headers = receiver.requests[-1]["headers"]
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/json"
    assert receiver.requests[-1]["path"] == "/logs"
    seqs = [e["gatekeeper"]["seq"] for e in receiver.events]
    assert seqs == list(range(1, len(seqs) + 1))  # everything, in order, once
    local = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(receiver.events) == len(local)
    received = as_log_file(receiver.events, tmp_path / "received" / "d.jsonl")
    assert verify_log(find_log_files([received]), keyring).exit_code == 0


async def test_a_long_http_outage_is_recorded_as_a_gap(tmp_path: Path, sealer: str) -> None:
    with Receiver(always_fail=True) as down:
        sink = HttpUploadSink(
            down.url, flush_seconds=0.01, buffer_events=5, max_backoff_seconds=0.05
        )
        log = DecisionLog(
            JsonlFileSink(tmp_path / "d.jsonl"),
            remote=[sink],
            remote_drain_seconds=0.2,
            sealer=sealer,
        )
        for i in range(30):
            log.record(decision_event(i))
            await log.flush()
        await log.aclose()
    entries = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    gaps = [e["gatekeeper"]["gap"] for e in entries if e["gatekeeper"]["kind"] == "gap"]
    assert gaps and all(g["sink"] == "http" and g["reason"] == "sink_outage" for g in gaps)
    assert sum(g["dropped"] for g in gaps) >= 20
    # The oldest entries were dropped (a batch in flight is out of the buffer meanwhile, so a
    # gap taken during its upload can start after it: the first gap need not hold seq 1).
    assert min(g["first_seq"] for g in gaps) == 1


async def test_redis_stream_sink_receives_the_whole_chain(
    redis_url: str, tmp_path: Path, signer: Signer, keyring: Keyring, sealer: str
) -> None:
    stream = f"gk:test:{uuid.uuid4().hex}"
    sink = RedisStreamSink(redis_url, stream, maxlen=10_000, flush_seconds=0.05)
    log = DecisionLog(
        JsonlFileSink(tmp_path / "d.jsonl"),
        remote=[sink],
        signer=signer,
        checkpoint_every=25,
        sealer=sealer,
    )
    for i in range(60):
        log.record(decision_event(i))
    await log.aclose()
    client = redis.Redis.from_url(redis_url)
    try:
        items = client.xrange(stream)
    finally:
        client.close()
    # The stream holds each line's exact bytes.
    assert (
        b"".join(fields[b"event"] + b"\n" for _, fields in items)
        == (tmp_path / "d.jsonl").read_bytes()
    )
    events = [json.loads(fields[b"event"]) for _, fields in items]
    assert [int(fields[b"seq"]) for _, fields in items] == [e["gatekeeper"]["seq"] for e in events]
    assert sum(e["gatekeeper"]["kind"] == "decision" for e in events) == 60
    assert events[-1]["gatekeeper"]["checkpoint"]["reason"] == "shutdown"
    streamed = as_log_file(events, tmp_path / "stream" / "d.jsonl")
    assert verify_log(find_log_files([streamed]), keyring).exit_code == 0
