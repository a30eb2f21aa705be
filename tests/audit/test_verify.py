"""Tamper tests: every kind of change to a signed log is found, at the first bad seq."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.audit import Signer, canonical_json, entry_hash
from gatekeeper.audit.chain import signing_message
from gatekeeper.audit.keys import Keyring
from gatekeeper.audit.sinks import checkpoint_sidecar
from gatekeeper.offline.audit.reader import find_log_files
from gatekeeper.offline.audit.verify import verify_log
from tests.audit.conftest import LogFactory

Lines = list[bytes]


def load(path: Path) -> Lines:
    return path.read_bytes().splitlines(keepends=True)


def parse(line: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(line)
    return result


def dump(entry: dict[str, Any]) -> bytes:
    return canonical_json(entry) + b"\n"


def edited(lines: Lines, seq: int, change: Callable[[dict[str, Any]], None]) -> Lines:
    out = list(lines)
    entry = parse(out[seq - 1])
    change(entry)
    out[seq - 1] = dump(entry)
    return out


def seq_of_kind(lines: Lines, kind: str, after: int = 0) -> int:
    return next(
        parse(line)["gatekeeper"]["seq"]
        for line in lines
        if parse(line)["gatekeeper"]["kind"] == kind and parse(line)["gatekeeper"]["seq"] > after
    )


def forged_entry(lines: Lines, seq: int) -> bytes:
    """A plausible decision that claims ``seq`` and links to the real entry before it."""
    entry = parse(lines[seq - 1])
    entry["decision_id"] = "forged"
    entry["result"] = {"allow": True}
    entry["gatekeeper"]["prev_hash"] = parse(lines[seq - 1])["gatekeeper"]["prev_hash"]
    return dump(entry)


def rewrite_chain_from(lines: Lines, seq: int, attacker: Signer) -> Lines:
    """The strongest forgery: change entry ``seq``, recompute every later hash and re-sign
    every later checkpoint with the attacker's own key."""
    entries = [parse(line) for line in lines]
    entries[seq - 1]["result"] = {"allow": True, "status": 200, "reasons": []}
    last_checkpoint = None
    for index, entry in enumerate(entries):
        gk = entry["gatekeeper"]
        if index >= seq:
            gk["prev_hash"] = entry_hash(entries[index - 1])
        if gk["kind"] == "checkpoint":
            if index >= seq:
                body = gk["checkpoint"]
                body.update(head_hash=gk["prev_hash"], key=attacker.fingerprint)
                body["previous"] = last_checkpoint
                body["signature"] = attacker.sign(signing_message(body))
            last_checkpoint = {"seq": gk["seq"], "hash": entry_hash(entry)}
    return [dump(e) for e in entries]


def flip_decision(entry: dict[str, Any]) -> None:
    entry["result"]["allow"] = not entry["result"]["allow"]


Tamper = Callable[[Lines], Lines]
CASES: list[Any] = [
    pytest.param(lambda ls: edited(ls, 20, flip_decision), 20, "modified",
                 id="modify-a-decision"),
    pytest.param(lambda ls: edited(ls, 21, lambda e: e.update(timestamp="2020-01-01T00:00:00Z")),
                 21, "modified", id="modify-the-entry-a-checkpoint-signs"),
    pytest.param(lambda ls: ls[:19] + ls[20:], 20, "missing", id="delete-one"),
    pytest.param(lambda ls: ls[:19] + ls[25:], 20, "missing", id="delete-several"),
    pytest.param(lambda ls: [*ls[:20], ls[19], *ls[20:]], 20, "inserted", id="insert-a-copy"),
    pytest.param(lambda ls: [*ls[:19], forged_entry(ls, 20), *ls[19:]], 20, "inserted",
                 id="insert-a-forged-entry"),
    pytest.param(lambda ls: [*ls[:20], b'{"decision_id":"opa","result":true}\n', *ls[20:]],
                 21, "inserted", id="insert-an-unchained-event"),
    pytest.param(lambda ls: [*ls[:19], ls[20], ls[19], *ls[21:]], 20, "reordered",
                 id="swap-two"),
    pytest.param(lambda ls: ls[:19] + ls[20:30] + [ls[19]] + ls[30:], 20, "reordered",
                 id="move-one-later"),
    pytest.param(lambda ls: edited(ls, 20, lambda e: e["gatekeeper"].update(seq=99)),
                 20, "modified", id="renumber-one"),
    pytest.param(lambda ls: [*ls[:18], b"{not json at all\n", *ls[19:]], 19, "modified",
                 id="garbage-line"),
    pytest.param(lambda ls: ls[:-8], -7, "truncated", id="truncate-the-tail"),
    pytest.param(lambda ls: edited(ls, 33, lambda e: e["gatekeeper"]["checkpoint"].update(
                 signature=e["gatekeeper"]["checkpoint"]["signature"][::-1])),
                 33, "bad_signature", id="forge-a-signature"),
    pytest.param(lambda ls: edited(ls, 33, lambda e: e["gatekeeper"]["checkpoint"].update(
                 reason="timer")), 33, "bad_signature", id="edit-a-signed-field"),
]  # fmt: skip


@pytest.fixture
async def signed_log(make_log: LogFactory) -> Path:
    # start (1), 60 decisions, a checkpoint after every 10 entries (11, 22, 33…), shutdown last
    return await make_log(60, checkpoint_every=10)


@pytest.mark.parametrize(("tamper", "seq", "kind"), CASES)
def test_tampering_is_found_at_the_first_bad_seq(
    signed_log: Path, keyring: Keyring, tamper: Tamper, seq: int, kind: str
) -> None:
    lines = load(signed_log)
    assert verify_log(find_log_files([signed_log]), keyring).exit_code == 0
    signed_log.write_bytes(b"".join(tamper(lines)))
    report = verify_log(find_log_files([signed_log]), keyring)
    assert report.problem is not None, report.summary()
    expected_seq = seq if seq > 0 else len(lines) + seq
    assert (report.problem.seq, report.problem.kind) == (expected_seq, kind)
    assert report.exit_code == 1


def test_truncation_right_after_a_checkpoint_is_found(signed_log: Path, keyring: Keyring) -> None:
    lines = load(signed_log)
    cut = seq_of_kind(lines, "checkpoint", after=40)
    signed_log.write_bytes(b"".join(lines[:cut]))  # ends with a valid, signed checkpoint
    report = verify_log(find_log_files([signed_log]), keyring)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (cut + 1, "truncated")


def test_a_rewritten_chain_resigned_with_another_key_is_found(
    signed_log: Path, keyring: Keyring, tmp_path: Path
) -> None:
    attacker = Signer.from_files(tmp_path / "attacker.pem", tmp_path / "attacker-keys")
    signed_log.write_bytes(b"".join(rewrite_chain_from(load(signed_log), 20, attacker)))
    report = verify_log(find_log_files([signed_log]), keyring)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (22, "unknown_key")


def test_a_changed_sidecar_checkpoint_is_found(signed_log: Path, keyring: Keyring) -> None:
    sidecar = checkpoint_sidecar(signed_log)
    first, *rest = load(sidecar)
    entry = parse(first)
    entry["labels"]["app"] = "changed"
    sidecar.write_bytes(dump(entry) + b"".join(rest))
    report = verify_log(find_log_files([signed_log]), keyring)
    assert report.problem is not None and report.problem.kind == "modified"
    assert report.problem.seq == entry["gatekeeper"]["seq"]


def test_a_torn_final_line_is_not_tampering(signed_log: Path, keyring: Keyring) -> None:
    with signed_log.open("ab") as file:
        file.write(b'{"labels":{"id":"x"},"decision_id":"cut sho')
    report = verify_log(find_log_files([signed_log]), keyring)
    assert report.problem is None and report.torn_tail is not None
    assert report.exit_code == 3 and report.decisions == 60


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_change_to_any_entry_is_found_there(
    signed_log: Path, keyring: Keyring, data: st.DataObject
) -> None:
    lines = load(signed_log)
    seq = data.draw(st.integers(min_value=1, max_value=len(lines)), label="seq")
    value = data.draw(st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=5)), label="value")
    tampered = edited(lines, seq, lambda e: e.update(tampered=value))
    path = signed_log.with_name("tampered.jsonl")
    path.write_bytes(b"".join(tampered))
    checkpoint_sidecar(path).write_bytes(checkpoint_sidecar(signed_log).read_bytes())
    report = verify_log(find_log_files([path]), keyring)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (seq, "modified")


async def test_the_chain_continues_across_rotated_files(
    make_log: LogFactory, keyring: Keyring
) -> None:
    path = await make_log(120, rotate_bytes=20_000, checkpoint_every=1000)
    files = find_log_files([path])
    assert len(files.entries) >= 3
    for rotated in files.entries[:-1]:  # each rotated file is sealed by a checkpoint
        last = parse(load(rotated)[-1])["gatekeeper"]
        assert last["kind"] == "checkpoint" and last["checkpoint"]["reason"] == "rotation"
    report = verify_log(files, keyring)
    assert report.exit_code == 0 and report.decisions == 120
    assert verify_log(find_log_files([path.parent]), keyring).exit_code == 0
    files.entries[1].unlink()  # an archived file that went missing
    report = verify_log(find_log_files([path]), keyring)
    assert report.problem is not None and report.problem.kind == "missing"


async def test_old_checkpoints_verify_after_a_key_rotation(
    make_log: LogFactory, keys_dir: Path, signer: Signer
) -> None:
    path = await make_log(15)
    new_signer = Signer.from_files(keys_dir / "signing-2026.pem", keys_dir)
    await make_log(15, path=path, start=15, log_signer=new_signer)
    report = verify_log(find_log_files([path]), Keyring(keys_dir))
    assert report.exit_code == 0
    assert report.keys == {signer.fingerprint, new_signer.fingerprint}
    old_key = keys_dir / f"{signer.fingerprint.removeprefix('ed25519:')}.pub"
    old_key.unlink()  # a keyring that lost the old key cannot vouch for old checkpoints
    report = verify_log(find_log_files([path]), Keyring(keys_dir))
    assert report.problem is not None and report.problem.kind == "unknown_key"
