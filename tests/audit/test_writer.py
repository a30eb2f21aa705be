"""The decision log's writer thread, as a user of ``DecisionLog`` sees it: order and chain after
``flush``, checkpoints while idle, durable waiters, overflow, and the log's lifecycle."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.audit import DecisionLog, DecisionLogUnavailable, JsonlFileSink, Signer
from gatekeeper.audit.canonical import GENESIS_HASH, digest
from gatekeeper.audit.keys import Keyring
from gatekeeper.offline.audit.reader import find_log_files
from gatekeeper.offline.audit.verify import verify_log
from tests.audit.conftest import complete_lines, decision_event

#: Long enough that a test waiting on it would fail by its own timeout: the writer must not
#: linger while a durable event, a flush or a close is waiting.
NEVER = 3600.0


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in complete_lines(path)]


def decision_ids(path: Path) -> list[str]:
    return [e["decision_id"] for e in entries(path) if e["gatekeeper"]["kind"] == "decision"]


def assert_chained(path: Path) -> None:
    """Every entry names the hash of the one before it, and seqs count up from 1."""
    raw = complete_lines(path)
    parsed = [json.loads(line)["gatekeeper"] for line in raw]
    assert [gk["seq"] for gk in parsed] == list(range(1, len(raw) + 1))
    assert [gk["prev_hash"] for gk in parsed] == [GENESIS_HASH, *map(digest, raw[:-1])]


class GatedSink(JsonlFileSink):
    """A file on a disk that stalls until ``gate`` is set: the writer is stuck in a write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()

    def write_batch(self, lines: list[bytes]) -> None:
        self.gate.wait(30)
        super().write_batch(lines)


Pace = Callable[[int], Awaitable[bool]]  # after event i: pause or not; True = flush now


async def no_pause(i: int) -> bool:
    return False


async def one_loop_turn(i: int) -> bool:
    await asyncio.sleep(0)
    return False


async def short_pauses(i: int) -> bool:
    await asyncio.sleep(0.001 if i % 4 == 0 else 0)
    return False


async def flushes_between(i: int) -> bool:
    await asyncio.sleep(0)
    return i % 7 == 0


@pytest.mark.parametrize("linger", [0.0, 0.01, NEVER], ids=["no-linger", "linger", "long-linger"])
@pytest.mark.parametrize(
    "pace",
    [no_pause, one_loop_turn, short_pauses, flushes_between],
    ids=["all-at-once", "one-per-loop-turn", "with-pauses", "flushes-between"],
)
async def test_events_are_in_the_file_in_order_and_chained_after_flush(
    tmp_path: Path, signer: Signer, pace: Pace, linger: float, sealer: str
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(
        JsonlFileSink(path), signer=signer, checkpoint_every=7, linger_seconds=linger, sealer=sealer
    )
    for i in range(40):
        log.record(decision_event(i))
        if await pace(i):
            await log.flush()
    await log.flush()  # before close: everything recorded so far is on disk
    assert decision_ids(path) == [f"d-{i:05d}" for i in range(40)]
    assert_chained(path)
    assert log.written == 40 and log.dropped == 0
    await log.aclose()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.sampled_from(["record", "record", "record", "durable", "flush", "turn", "pause"]),
        max_size=40,
    )
)
async def test_any_mix_of_calls_keeps_the_order_of_recording(
    tmp_path_factory: pytest.TempPathFactory, ops: list[str], sealer: str
) -> None:
    path = tmp_path_factory.mktemp("mix") / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), linger_seconds=0.002, sealer=sealer)
    expected: list[str] = []
    for n, op in enumerate(ops):
        event = {"decision_id": str(n)}
        if op == "record":
            log.record(event)
            expected.append(str(n))
        elif op == "durable":
            await log.record_durable(event, 30.0)
            expected.append(str(n))
            assert decision_ids(path) == expected  # a durable event is on disk when it returns
        elif op == "flush":
            await log.flush()
            assert decision_ids(path) == expected
        elif op == "turn":
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.001)
    await log.aclose()
    if expected:
        assert decision_ids(path) == expected
        assert_chained(path)


async def test_a_timer_checkpoint_is_written_while_idle(
    tmp_path: Path, signer: Signer, keyring: Keyring, sealer: str
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), signer=signer, checkpoint_seconds=0.05, sealer=sealer)
    for i in range(3):
        log.record(decision_event(i))
    await log.flush()
    for _ in range(250):  # nothing is recorded meanwhile: only the writer's own timer can sign
        if entries(path)[-1]["gatekeeper"]["kind"] == "checkpoint":
            break
        await asyncio.sleep(0.02)
    last = entries(path)[-1]["gatekeeper"]
    assert last["kind"] == "checkpoint" and last["checkpoint"]["reason"] == "timer"
    assert last["checkpoint"]["head_seq"] == 4  # start + 3 events, all signed
    await log.aclose()
    assert verify_log(find_log_files([path]), keyring).exit_code == 0


async def test_durable_waiters_complete_while_other_events_trickle_in(
    tmp_path: Path, sealer: str
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), linger_seconds=NEVER, sealer=sealer)

    async def trickle() -> None:
        for i in range(50):
            log.record(decision_event(1000 + i))
            await asyncio.sleep(0)

    async def durable(i: int) -> str:
        await asyncio.sleep(0.001 * (i % 5))
        await log.record_durable(decision_event(i), 10.0)
        return f"d-{i:05d}" if f"d-{i:05d}" in decision_ids(path) else "missing"

    found = await asyncio.gather(trickle(), *(durable(i) for i in range(30)))
    assert found[1:] == [f"d-{i:05d}" for i in range(30)]  # each on disk when it returned
    await log.flush()
    assert len(decision_ids(path)) == 80
    await log.aclose()


async def test_a_durable_event_is_refused_while_the_queue_stays_full(tmp_path: Path) -> None:
    sink = GatedSink(tmp_path / "d.jsonl")
    log = DecisionLog(sink, queue_size=2)
    log.record(decision_event(0))
    log.record(decision_event(1))  # the writer is stuck writing the start entry: queue full
    with pytest.raises(DecisionLogUnavailable) as caught:
        await log.record_durable(decision_event(2), 0.1)
    assert not caught.value.pending and log.durable_failures == 1
    sink.gate.set()
    await log.aclose()
    assert decision_ids(tmp_path / "d.jsonl") == ["d-00000", "d-00001"]


async def test_overflow_drops_are_counted_and_named_in_a_gap(tmp_path: Path) -> None:
    sink = GatedSink(tmp_path / "d.jsonl")
    log = DecisionLog(sink, queue_size=5)
    for i in range(20):  # the writer is stuck in a write: the queue overflows
        log.record({"decision_id": str(i)})
    assert log.dropped == 15 and log.queue_depth() == 5
    sink.gate.set()
    await log.flush()
    log.record({"decision_id": "after"})
    await log.aclose()
    written = entries(tmp_path / "d.jsonl")
    (gap,) = [e["gatekeeper"]["gap"] for e in written if e["gatekeeper"]["kind"] == "gap"]
    assert gap["reason"] == "queue_full" and gap["dropped"] == 15
    assert gap["decision_ids"] == [str(i) for i in range(5, 20)]
    assert decision_ids(tmp_path / "d.jsonl") == ["0", "1", "2", "3", "4", "after"]
    assert log.dropped == 15 and log.written == 6


def writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "decision-log"}


async def close_twice(log: DecisionLog) -> None:
    await log.aclose()
    await log.aclose()


async def close_concurrently(log: DecisionLog) -> None:
    await asyncio.gather(log.aclose(), log.aclose(), log.aclose())


@pytest.mark.parametrize("close", [close_twice, close_concurrently], ids=["twice", "concurrently"])
@pytest.mark.parametrize("events", [0, 5], ids=["never-started", "started"])
async def test_closing_more_than_once_is_safe(
    tmp_path: Path,
    signer: Signer,
    close: Callable[[DecisionLog], Awaitable[None]],
    events: int,
    sealer: str,
) -> None:
    before = writer_threads()
    path = tmp_path / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), signer=signer, sealer=sealer)
    for i in range(events):
        log.record(decision_event(i))
    await close(log)
    assert writer_threads() <= before  # the writer thread has ended
    kinds = [e["gatekeeper"]["kind"] for e in entries(path)]
    if events:
        assert kinds == ["start", *["decision"] * events, "checkpoint"]  # one shutdown checkpoint
    else:
        assert kinds == []  # a log that never started writes nothing, even at close
    log.record(decision_event(99))  # after close: counted, never written, no new thread
    await log.flush()
    assert log.dropped == 1 and writer_threads() <= before
    with pytest.raises(DecisionLogUnavailable):
        await log.record_durable(decision_event(100), 1.0)
    assert len(entries(path)) == len(kinds)


async def test_events_recorded_outside_the_event_loop_are_written(
    tmp_path: Path, sealer: str
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), sealer=sealer)
    await asyncio.to_thread(lambda: [log.record(decision_event(i)) for i in range(3)])
    await log.aclose()
    assert decision_ids(path) == [f"d-{i:05d}" for i in range(3)]


EXIT_WITHOUT_CLOSE = """
import asyncio, sys
from pathlib import Path
from gatekeeper.audit import DecisionLog, JsonlFileSink, Signer

async def main() -> None:
    keys = Path(sys.argv[2])
    signer = Signer.from_files(keys / "k.pem", keys)
    log = DecisionLog(JsonlFileSink(Path(sys.argv[1])), signer=signer, sealer=sys.argv[3])
    for i in range(50):
        log.record({"decision_id": str(i)})

asyncio.run(main())  # the app forgets aclose(), and exits
"""


def test_a_log_never_closed_is_written_out_when_the_process_exits(
    tmp_path: Path, keys_dir: Path, sealer: str
) -> None:
    path = tmp_path / "d.jsonl"
    Signer.from_files(keys_dir / "k.pem", keys_dir)
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WITHOUT_CLOSE, str(path), str(keys_dir), sealer],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert decision_ids(path) == [str(i) for i in range(50)]
    last = entries(path)[-1]["gatekeeper"]
    assert last["kind"] == "checkpoint" and last["checkpoint"]["reason"] == "shutdown"
    assert verify_log(find_log_files([path]), Keyring(keys_dir)).exit_code == 0


@pytest.mark.parametrize("linger", [0.0, 0.25])
async def test_the_linger_setting_reaches_the_writer(tmp_path: Path, linger: float) -> None:
    from gatekeeper.audit.setup import build_decision_log
    from gatekeeper.settings import Settings

    settings = Settings(audit={"path": tmp_path / "d.jsonl", "linger_seconds": linger})
    log = build_decision_log(settings.audit)
    try:
        assert log.linger_seconds == linger
    finally:
        await log.aclose()


async def test_a_writer_falling_behind_runs_before_events_are_dropped(
    tmp_path: Path, sealer: str
) -> None:
    """Recording back to back on the event loop's thread outpaces the writer thread; once the
    queue is half full, ``record`` lets the interpreter lock go so the writer catches up."""
    path = tmp_path / "d.jsonl"
    log = DecisionLog(JsonlFileSink(path), queue_size=64, sealer=sealer)
    await log.prepare()  # as at start-up: a writer process has booted before the first event
    for i in range(3000):
        log.record(decision_event(i))
    await log.flush()
    assert log.dropped == 0
    assert len(decision_ids(path)) == 3000
    await log.aclose()


LOCK_AT_EXIT = """
import atexit, os, sys
from pathlib import Path
from gatekeeper.audit.lock import ChainLock

lock = ChainLock(Path(sys.argv[1]))
fd = lock.fileno()
atexit._run_exitfuncs()  # what the interpreter runs at exit, before the log's own hook ends
os.fstat(fd)  # EBADF if an exit hook closed the lock under the writer
print("held")
"""


def test_the_chain_lock_outlives_the_interpreters_exit_hooks(tmp_path: Path) -> None:
    # weakref's exit hook runs before the decision log's (the later registered runs first):
    # had it released the lock, a log left unclosed would hand its writer process a closed
    # descriptor (seen as "OSError: [Errno 9] Bad file descriptor" when the process started).
    done = subprocess.run(
        [sys.executable, "-c", LOCK_AT_EXIT, str(tmp_path / "d.jsonl")],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "held"), done.stderr
