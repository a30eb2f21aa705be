"""Naming a witness (``audit.witness``), and the publisher's behaviour apart from any log."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.audit.witness import (
    FileWitness,
    WitnessError,
    WitnessPublisher,
    check_witness_spec,
    open_witness,
    read_witness,
    redis_target,
)
from gatekeeper.errors import ConfigurationError
from gatekeeper.settings import Settings


@pytest.mark.parametrize(
    ("spec", "url", "stream"),
    [
        ("redis://127.0.0.1:6379/gk:witness", "redis://127.0.0.1:6379", "gk:witness"),
        ("redis://127.0.0.1:6379/2/gk:witness", "redis://127.0.0.1:6379/2", "gk:witness"),
        ("rediss://u:p@host/0/w%2Fx", "rediss://u:p@host/0", "w/x"),
    ],
)
def test_a_redis_witness_names_its_stream(spec: str, url: str, stream: str) -> None:
    assert redis_target(spec) == (url, stream)


@pytest.mark.parametrize(
    "spec",
    ["redis://host:6379", "redis://host/a/b", "redis://host/1/2/3", "ftp://host/x", "  "],
)
def test_a_witness_that_names_nothing_usable_is_refused(spec: str) -> None:
    with pytest.raises(WitnessError):
        check_witness_spec(spec)
    with pytest.raises(ConfigurationError):
        Settings.load(audit={"witness": spec})


def test_settings_accept_the_witness_kinds(tmp_path: Path) -> None:
    for spec in ("redis://h/0/k", "https://w.example/chains", str(tmp_path / "w.jsonl")):
        assert Settings.load(audit={"witness": spec}).audit.witness == spec


def test_a_file_witness_keeps_records_in_order(tmp_path: Path) -> None:
    witness = open_witness(f"file://{tmp_path}/elsewhere/w.jsonl")
    assert isinstance(witness, FileWitness)
    for seq in (11, 22):
        witness.publish(b'{"checkpoint":{},"seq":%d}' % seq)
    assert [r["seq"] for r in read_witness(witness)] == [11, 22]
    with pytest.raises(FileNotFoundError):
        list(FileWitness(tmp_path / "mistyped.jsonl").records())


class Flaky:
    """A witness that fails its first ``failures`` publications, then keeps them."""

    description = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.kept: list[bytes] = []
        self.lock = threading.Lock()

    def publish(self, record: bytes) -> None:
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("away")
            self.kept.append(record)

    def records(self) -> Iterator[bytes]:
        return iter(self.kept)

    def close(self) -> None:
        return None


def test_the_publisher_retries_in_order_and_counts() -> None:
    witness = Flaky(failures=2)
    publisher = WitnessPublisher(witness, max_backoff_seconds=0.05)
    for n in range(5):
        publisher.submit(b"%d" % n)
    assert publisher.drain(5.0)
    publisher.close(1.0)
    assert witness.kept == [b"0", b"1", b"2", b"3", b"4"]
    assert publisher.failures == 2 and publisher.published == 5 and publisher.dropped == 0


def test_the_publisher_drops_the_oldest_beyond_its_buffer_and_counts() -> None:
    witness = Flaky(failures=10_000)
    publisher = WitnessPublisher(witness, buffer=3, max_backoff_seconds=0.01)
    for n in range(10):
        publisher.submit(b"%d" % n)  # never blocks, whatever the witness does
    publisher.close(0.1)
    assert publisher.dropped == 10 and publisher.published == 0
