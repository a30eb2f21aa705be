from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.audit import (
    DecisionLog,
    DecisionLogUnavailable,
    DecisionRecord,
    JsonlFileSink,
    Masker,
    Signer,
    StdoutSink,
    rfc3339_ns,
)
from gatekeeper.audit.canonical import canonical_json
from gatekeeper.audit.events import base_labels
from gatekeeper.audit.keys import Keyring
from gatekeeper.audit.setup import build_decision_log
from gatekeeper.audit.sinks import checkpoint_sidecar
from gatekeeper.offline.audit.reader import find_log_files
from gatekeeper.offline.audit.verify import verify_log
from gatekeeper.settings import Settings
from tests.audit.conftest import LogFactory, decision_event


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def decisions(path: Path) -> list[dict[str, Any]]:
    return [e for e in entries(path) if e["gatekeeper"]["kind"] == "decision"]


def test_timestamps_match_opa_formatting() -> None:
    assert rfc3339_ns(1_559_592_436_939_402_185) == "2019-06-03T20:07:16.939402185Z"
    assert rfc3339_ns(1_559_592_436_900_000_000) == "2019-06-03T20:07:16.9Z"
    assert rfc3339_ns(1_559_592_436_000_000_000) == "2019-06-03T20:07:16Z"


def test_timestamps_of_other_seconds_are_their_own() -> None:
    # The formatted second is reused while events come within it, and only then.
    for unix_ns in (1_559_592_436_5, 1_559_592_437_000_000_001, 1_559_592_436_000_000_010):
        seconds, nanos = divmod(unix_ns, 1_000_000_000)
        expected = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        expected += f".{nanos:09d}".rstrip("0") if nanos else ""
        assert rfc3339_ns(unix_ns) == expected + "Z"


def test_labels_follow_the_configured_ones_and_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = {"app": "a"}
    first = base_labels(labels)
    first["app"] = "changed by a consumer"
    assert base_labels(labels)["app"] == "a"
    labels["app"] = "b"
    assert base_labels(labels)["app"] == "b"
    monkeypatch.setenv("GATEKEEPER_VERSION_LABEL", "9.9")
    assert base_labels(labels) == {"id": first["id"], "version": "9.9", "app": "b"}


def test_event_layout_is_opa_compatible() -> None:
    record = DecisionRecord(decision_id="d-1", path="/v1/messages", method="POST", revision="r1")
    record.input = {"subject": {"id": "s"}}
    record.result = {"allow": True}
    record.status = 200
    event = record.to_event({"app": "t"})
    assert event["decision_id"] == "d-1"
    assert event["path"] == "gatekeeper/decision"
    assert event["bundles"] == {"gatekeeper": {"revision": "r1"}}
    assert event["labels"]["app"] == "t" and event["labels"]["id"]
    assert event["gatekeeper"]["enforcement"]["status"] == 200
    assert event["gatekeeper"]["kind"] == "decision"


def test_quota_states_leave_out_what_the_results_quota_of_that_name_says() -> None:
    """``enforcement.quotas`` names each state's quota by ``name``: its key and capacity are
    left out when the result's first quota of that name has the same, kept otherwise; an
    integral ``remaining`` is an integer (the same canonical JSON)."""
    record = DecisionRecord(decision_id="d-1", path="/v1/messages", method="POST")
    record.result = {
        "allow": True,
        "quotas": [
            {"name": "requests", "key": "subject:s:requests", "capacity": 60, "cost": 1},
            {"name": "tokens", "key": "subject:s:tokens", "capacity": 1000, "cost": 9},
        ],
    }
    record.quotas = [
        {"name": "requests", "key": "subject:s:requests", "capacity": 60, "remaining": 59.0,
         "refused": False},
        {"name": "tokens", "key": "org:o:tokens", "capacity": 1000, "remaining": 0.5,
         "refused": True},
        {"name": "gone", "key": "k", "capacity": 1, "remaining": 1e300, "refused": False},
        {"name": "month", "unchecked": True},
    ]  # fmt: skip
    logged = record.to_event({})["gatekeeper"]["enforcement"]["quotas"]
    assert logged == [
        {"name": "requests", "remaining": 59, "refused": False},
        {"name": "tokens", "key": "org:o:tokens", "capacity": 1000, "remaining": 0.5,
         "refused": True},
        {"name": "gone", "key": "k", "capacity": 1, "remaining": 1e300, "refused": False},
        {"name": "month", "unchecked": True},
    ]  # fmt: skip
    assert type(logged[0]["remaining"]) is int
    assert record.quotas[0]["key"] == "subject:s:requests"  # the record's own states unchanged
    assert canonical_json(logged[0]) == canonical_json({**logged[0], "remaining": 59.0})


async def test_events_are_written_in_order_and_chained(tmp_path: Path, sealer: str) -> None:
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), sealer=sealer)
    for i in range(100):
        log.record({"decision_id": str(i)})
    await log.aclose()
    written = entries(tmp_path / "d.jsonl")
    assert written[0]["gatekeeper"]["kind"] == "start"
    assert [e["decision_id"] for e in written[1:]] == [str(i) for i in range(100)]
    assert [e["gatekeeper"]["seq"] for e in written] == list(range(1, 102))


async def test_checkpoints_every_n_entries_and_on_shutdown(
    make_log: LogFactory, keyring: Keyring, sealer: str
) -> None:
    path = await make_log(25, checkpoint_every=10, sealer=sealer)
    kinds = [e["gatekeeper"]["kind"] for e in entries(path)]
    # start + 25 decisions: a checkpoint after every 10 entries, and one at shutdown
    assert kinds.count("checkpoint") == 3
    last = entries(path)[-1]["gatekeeper"]
    assert last["kind"] == "checkpoint" and last["checkpoint"]["reason"] == "shutdown"
    assert verify_log(find_log_files([path]), keyring).exit_code == 0


async def test_timer_checkpoint_signs_an_idle_log(
    tmp_path: Path, signer: Signer, sealer: str
) -> None:
    log = DecisionLog(
        JsonlFileSink(tmp_path / "d.jsonl"), signer=signer, checkpoint_seconds=0.05, sealer=sealer
    )
    log.record(decision_event(1))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if any(e["gatekeeper"]["kind"] == "checkpoint" for e in entries(tmp_path / "d.jsonl")):
            break
    reasons = [
        e["gatekeeper"]["checkpoint"]["reason"]
        for e in entries(tmp_path / "d.jsonl")
        if e["gatekeeper"]["kind"] == "checkpoint"
    ]
    await log.aclose()
    assert reasons[:1] == ["timer"]


async def test_a_restart_continues_the_chain(
    make_log: LogFactory, keyring: Keyring, tmp_path: Path, sealer: str
) -> None:
    path = await make_log(5, sealer=sealer)
    await make_log(5, path=path, start=5, sealer=sealer)
    written = entries(path)
    restarts = [e for e in written if e["gatekeeper"]["kind"] == "restart"]
    assert len(restarts) == 1
    restart = restarts[0]["gatekeeper"]
    assert restart["restart"]["clean_shutdown"] is True
    assert restart["restart"]["previous_seq"] == restart["seq"] - 1
    assert restart["prev_hash"] == restart["restart"]["previous_hash"]
    report = verify_log(find_log_files([path]), keyring)
    assert report.exit_code == 0 and report.restarts == 1 and report.decisions == 10


async def test_the_smallest_field_cap_never_cuts_the_chains_own_hashes(
    tmp_path: Path, signer: Signer, keyring: Keyring, sealer: str
) -> None:
    """``audit.max_field_chars`` may be 64, shorter than a hash (71 chars): it cuts a long
    string of an event, never a ``prev_hash`` nor the ``previous_hash`` of a ``restart``
    entry (the log's own entries are not masked), so a restarted log still verifies."""
    path = tmp_path / "d.jsonl"
    for run in range(2):
        log = DecisionLog(
            JsonlFileSink(path), signer=signer, masker=Masker(max_field_chars=64), sealer=sealer
        )
        for i in range(3):
            event = decision_event(run * 3 + i)
            event["input"]["request"]["model"] = "m" * 100
            log.record(event)
        await log.aclose()
    written = entries(path)
    restart = next(e for e in written if e["gatekeeper"]["kind"] == "restart")
    assert len(restart["gatekeeper"]["restart"]["previous_hash"]) == 71
    decisions = [e for e in written if e["gatekeeper"]["kind"] == "decision"]
    assert len(decisions) == 6
    assert all(e["truncated"] == ["/input/request/model"] for e in decisions)
    report = verify_log(find_log_files([path]), keyring)
    assert report.exit_code == 0 and report.restarts == 1, report.problem


async def test_a_torn_final_line_is_cut_and_described_at_restart(
    make_log: LogFactory, keyring: Keyring, sealer: str
) -> None:
    path = await make_log(5, sealer=sealer)
    with path.open("ab") as file:
        file.write(b'{"decision_id":"half-writ')  # a crash in the middle of a write
    torn = verify_log(find_log_files([path]), keyring)
    assert torn.problem is None and torn.torn_tail is not None and torn.exit_code == 3
    await make_log(3, path=path, start=5, sealer=sealer)
    restart = next(e for e in entries(path) if e["gatekeeper"]["kind"] == "restart")
    assert restart["gatekeeper"]["restart"]["torn_tail"]["bytes"] == 25
    assert verify_log(find_log_files([path]), keyring).exit_code == 0


async def test_durable_events_share_fsyncs(tmp_path: Path) -> None:
    class CountingSink(JsonlFileSink):
        syncs = 0

        def sync(self) -> None:
            CountingSink.syncs += 1
            super().sync()

    log = DecisionLog(CountingSink(tmp_path / "d.jsonl"))
    await asyncio.gather(*(log.record_durable(decision_event(i), 5.0) for i in range(200)))
    on_disk = len(decisions(tmp_path / "d.jsonl"))  # before close: already durable
    await log.aclose()
    assert on_disk == 200
    assert 1 <= CountingSink.syncs < 200  # group commit: one fsync per batch, not per event


async def test_durable_write_failure_refuses(tmp_path: Path) -> None:
    class FullDisk(JsonlFileSink):
        def write_batch(self, lines: list[bytes]) -> None:
            if any(b'"kind":"decision"' in line for line in lines):
                raise OSError(28, "No space left on device")
            super().write_batch(lines)

    log = DecisionLog(FullDisk(tmp_path / "d.jsonl"))
    with pytest.raises(DecisionLogUnavailable) as caught:
        await log.record_durable(decision_event(1), 5.0)
    assert not caught.value.pending
    log.record({"decision_id": "x", "gatekeeper": {"kind": "probe"}})
    await log.aclose()
    gap = next(e for e in entries(tmp_path / "d.jsonl") if e["gatekeeper"]["kind"] == "gap")
    assert gap["gatekeeper"]["gap"]["reason"] == "write_error"


async def test_an_unserialisable_event_is_still_counted(tmp_path: Path, sealer: str) -> None:
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), sealer=sealer)
    log.record({"decision_id": "odd", "input": {"n": object()}})
    await log.aclose()
    (event,) = decisions(tmp_path / "d.jsonl")
    assert event["decision_id"] == "odd" and "unwritable" in event["gatekeeper"]


async def test_integers_beyond_2_53_are_written_as_strings(tmp_path: Path, sealer: str) -> None:
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), sealer=sealer)
    log.record({"decision_id": "big", "input": {"n": 2**70, "time": {"unix_ns": 2**61}}})
    await log.aclose()
    (event,) = decisions(tmp_path / "d.jsonl")
    assert event["input"] == {"n": str(2**70), "time": {"unix_ns": str(2**61)}}


async def test_stdout_sink_gets_the_same_entries(tmp_path: Path) -> None:
    out = io.BytesIO()
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), sinks=[StdoutSink(out)])
    for i in range(5):
        log.record(decision_event(i))
    await log.aclose()
    assert out.getvalue() == (tmp_path / "d.jsonl").read_bytes()


async def test_files_rotate_by_age(
    tmp_path: Path, signer: Signer, keyring: Keyring, sealer: str
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path, rotate_seconds=0.05), signer=signer, sealer=sealer)
    for i in range(3):
        log.record(decision_event(i))
        await log.flush()
        await asyncio.sleep(0.06)
    await log.aclose()
    files = find_log_files([path])
    assert len(files.entries) >= 3
    assert verify_log(files, keyring).exit_code == 0


async def test_settings_build_every_sink(tmp_path: Path) -> None:
    settings = Settings.load(
        audit={
            "path": tmp_path / "d.jsonl",
            "stdout": True,
            "redis": {"url": "redis://127.0.0.1:1/0"},
            "http": {"url": "http://127.0.0.1:1/logs"},
            "durable_paths": ["/v1/*"],
        }
    )
    log = build_decision_log(settings.audit)
    assert [type(s).__name__ for s in log.sinks] == ["JsonlFileSink", "StdoutSink"]
    assert [s.name for s in log.remote] == ["redis", "http"]
    assert log.options.signer is not None and (tmp_path / "keys").is_dir()
    await log.aclose()


async def test_a_checkpoint_the_sidecar_missed_is_copied_into_it_at_the_next_start(
    tmp_path: Path, signer: Signer, keyring: Keyring, sealer: str
) -> None:
    path = tmp_path / "log" / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), signer=signer, checkpoint_every=10, sealer=sealer)
    for i in range(25):
        log.record(decision_event(i))
    await log.aclose()
    sidecar = checkpoint_sidecar(path)
    sidecar.write_bytes(b"".join(sidecar.read_bytes().splitlines(keepends=True)[:-1]))
    # As if the process had died between the log's write and the sidecar's.
    missed = verify_log(find_log_files([path]), keyring)
    assert missed.problem is not None and missed.problem.kind == "missing_sidecar"
    again = DecisionLog(JsonlFileSink(path), signer=signer, checkpoint_every=10, sealer=sealer)
    again.record(decision_event(99))
    await again.aclose()
    report = verify_log(find_log_files([path]), keyring)
    assert report.exit_code == 0 and report.restarts == 1, report.summary()
