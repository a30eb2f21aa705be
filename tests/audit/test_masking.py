from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gatekeeper.audit import DecisionLog, JsonlFileSink, Masker, entry_hash, parse_rules
from gatekeeper.audit.canonical import canonical_json
from gatekeeper.audit.masking import keyed_hash
from gatekeeper.audit.setup import build_decision_log
from gatekeeper.errors import ConfigurationError
from gatekeeper.settings import Settings

KEY = b"reviewer-key"


def event() -> dict[str, Any]:
    return {
        "decision_id": "d",
        "input": {
            "subject": {"id": "s-1", "payment_fingerprint": "pf-123", "kyc": {"level": "x"}},
            "request": {"headers": {"Authorization": "Bearer gk-secret", "accept": "*/*"}},
            "items": [{"name": "a", "password": "p1"}, {"name": "b"}],
            "a/b": {"c~d": 1},
        },
        "result": {"allow": True},
    }


CASES = [
    pytest.param(["/input/subject/id"], "/input/subject/id", None, ["/input/subject/id"], [],
                 id="pointer-string-erases"),
    pytest.param([{"op": "remove", "path": "/input/subject/id"}], "/input/subject/id", None,
                 ["/input/subject/id"], [], id="remove-op"),
    pytest.param([{"op": "upsert", "path": "/input/subject/id", "value": "***"}],
                 "/input/subject/id", "***", [], ["/input/subject/id"], id="upsert-replaces"),
    pytest.param([{"op": "upsert", "path": "/input/subject/note", "value": "n"}],
                 "/input/subject/note", "n", [], ["/input/subject/note"], id="upsert-creates"),
    pytest.param([{"op": "hash", "path": "/input/subject/payment_fingerprint"}],
                 "/input/subject/payment_fingerprint",
                 "hmac-sha256:" + hmac.new(KEY, b"pf-123", hashlib.sha256).hexdigest(),
                 [], ["/input/subject/payment_fingerprint"], id="hash-keyed"),
    pytest.param(["/input/items/1"], "/input/items/1", None, ["/input/items/1"], [],
                 id="array-index"),
    pytest.param(["/input/a~1b/c~0d"], "/input/a~1b/c~0d", None, ["/input/a~1b/c~0d"], [],
                 id="escaped-pointer"),
    pytest.param(["/input/nowhere/x", "/result/nope"], "/input/nowhere", None, [], [],
                 id="missing-location-ignored"),
]  # fmt: skip


def lookup(doc: Any, pointer: str) -> Any:
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, list):
            idx = int(token)
            if idx >= len(doc):
                return None
            doc = doc[idx]
        elif isinstance(doc, dict):
            if token not in doc:
                return None
            doc = doc[token]
    return doc


@pytest.mark.parametrize(("rules", "pointer", "value", "erased", "masked"), CASES)
def test_mask_rules(
    rules: list[Any], pointer: str, value: Any, erased: list[str], masked: list[str]
) -> None:
    masked_event = event()
    Masker(parse_rules(rules), secret_fields=(), hmac_key=KEY).apply(masked_event)
    assert lookup(masked_event, pointer) == value
    assert masked_event.get("erased", []) == erased
    assert masked_event.get("masked", []) == masked


def test_hash_without_a_key_removes_the_value() -> None:
    masked_event = event()
    Masker(parse_rules([{"op": "hash", "path": "/input/subject/payment_fingerprint"}])).apply(
        masked_event
    )
    assert "payment_fingerprint" not in masked_event["input"]["subject"]
    assert "/input/subject/payment_fingerprint" in masked_event["erased"]


def test_secret_fields_are_removed_wherever_they_are() -> None:
    masked_event = event()
    Masker().apply(masked_event)
    raw = json.dumps(masked_event)
    assert "gk-secret" not in raw and "p1" not in raw
    assert set(masked_event["erased"]) == {
        "/input/request/headers/Authorization",
        "/input/items/0/password",
    }
    assert masked_event["input"]["request"]["headers"] == {"accept": "*/*"}


def test_a_rule_that_masks_a_secret_field_wins_over_the_scan() -> None:
    masked_event = event()
    rule = {"op": "upsert", "path": "/input/request/headers/Authorization", "value": "Bearer ***"}
    Masker(parse_rules([rule])).apply(masked_event)
    assert masked_event["input"]["request"]["headers"]["Authorization"] == "Bearer ***"


def test_masking_never_changes_the_requests_own_objects() -> None:
    original = event()
    before = copy.deepcopy(original["input"])
    shared_input = original["input"]
    Masker(parse_rules(["/input/subject/id"])).apply(original)
    assert shared_input == before  # metrics and traces still read the request's input
    assert "id" not in original["input"]["subject"]


def test_policy_rules_follow_the_current_policy_data() -> None:
    data: dict[str, Any] = {"rules": ["/input/subject/id"]}
    masker = Masker(policy_rules=lambda: data["rules"], secret_fields=())
    first = event()
    masker.apply(first)
    data["rules"] = ["/input/subject/kyc"]
    second = event()
    masker.apply(second)
    assert first["erased"] == ["/input/subject/id"]
    assert second["erased"] == ["/input/subject/kyc"]


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param("input/x", id="no-leading-slash"),
        pytest.param("/labels/id", id="outside-input-and-result"),
        pytest.param({"op": "drop", "path": "/input/x"}, id="unknown-op"),
        pytest.param({"op": "upsert", "path": "/input/x"}, id="upsert-without-value"),
        pytest.param({"op": "remove", "path": "/input/x", "why": 1}, id="unknown-key"),
        pytest.param(42, id="not-a-rule"),
    ],
)
def test_malformed_rules_are_rejected_at_start(rule: Any) -> None:
    with pytest.raises(ValueError):
        parse_rules([rule])
    with pytest.raises(ConfigurationError):
        Settings.load(audit={"mask": [rule]})


def test_policy_mask_rules_are_validated_at_start(tmp_path: Path) -> None:
    settings = Settings.load(audit={"path": tmp_path / "d.jsonl"})
    bad = {"gatekeeper": {"config": {"log": {"mask": ["no-slash"]}}}}
    with pytest.raises(ConfigurationError, match=r"config\.log\.mask"):
        build_decision_log(settings.audit, lambda: bad)


async def test_keyed_hash_lets_a_reviewer_match_a_value(tmp_path: Path) -> None:
    settings = Settings.load(
        audit={"path": tmp_path / "d.jsonl", "hmac_key": KEY.decode(), "checkpoint_every": 5}
    )
    policy = {"gatekeeper": {"config": {"log": {"mask": [
        {"op": "hash", "path": "/input/subject/payment_fingerprint"}
    ]}}}}  # fmt: skip
    log = build_decision_log(settings.audit, lambda: policy)
    log.record(event())
    await log.aclose()
    raw = (tmp_path / "d.jsonl").read_bytes()
    assert b"pf-123" not in raw and b"gk-secret" not in raw
    assert keyed_hash(KEY, "pf-123").encode() in raw


async def test_masking_happens_before_any_sink(tmp_path: Path) -> None:
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), masker=Masker())
    log.record(event())
    await log.aclose()
    assert b"gk-secret" not in (tmp_path / "d.jsonl").read_bytes()


_names = st.lists(
    st.text(alphabet="abc_-.", min_size=1, max_size=6), min_size=1, max_size=8, unique=True
)


@settings(max_examples=200, deadline=None)
@given(names=_names, text=st.text(alphabet='abc_-."x: ', max_size=60))
def test_the_secret_probe_finds_exactly_the_secret_field_names(names: list[str], text: str) -> None:
    """The probe is a prefix tree of the names, read backwards; it must match where a plain
    list would (in any case)."""
    masker = Masker(secret_fields=names)
    flat = re.compile(b'"(?:' + b"|".join(re.escape(n.encode()) for n in names) + b')":')
    candidates = [text.encode(), *(b'"' + n.encode() + b'":' for n in names)]
    for candidate in [*candidates, *(c.upper() for c in candidates)]:
        expected = bool(flat.search(candidate.lower()))
        assert masker.may_hold_secret(candidate) == expected, candidate


async def test_a_logged_secret_is_erased_and_the_chain_covers_what_was_written(
    tmp_path: Path,
) -> None:
    """What is written, and hashed into the chain, is the event with its secrets erased."""
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), masker=Masker())
    plain = {"decision_id": "p", "input": {"subject": {"id": "s"}}, "result": {"allow": True}}
    for logged in (event(), plain, event()):
        log.record(logged)
    await log.aclose()
    raw = (tmp_path / "d.jsonl").read_bytes()
    assert b"gk-secret" not in raw and b'"p1"' not in raw
    entries = [json.loads(line) for line in raw.splitlines()]
    decisions = [e for e in entries if e["gatekeeper"]["kind"] == "decision"]
    secrets = {"/input/request/headers/Authorization", "/input/items/0/password"}
    assert [set(e.get("erased", ())) for e in decisions] == [secrets, set(), secrets]
    for before, after in itertools.pairwise(entries):
        assert after["gatekeeper"]["prev_hash"] == entry_hash(before)


_leaves = st.text(alphabet='ab"\\é\n\U0001f600', max_size=40) | st.integers() | st.none()
_events = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(event=st.dictionaries(st.sampled_from(["input", "result", "gatekeeper"]), _events),
       limit=st.integers(1, 30))  # fmt: skip
@example(event={"input": {"model": '"' * 40}}, limit=20)
@example(event={"input": {"model": "\\" * 40}}, limit=20)
def test_strings_longer_than_max_field_chars_are_cut_however_they_are_escaped(
    event: dict[str, Any], limit: int
) -> None:
    """The cap's quick test over the serialised event (quotes, backslashes, non-ASCII) never
    lets a longer string through: after masking, no string is longer than the cap plus its
    marker, and each one cut is listed in ``truncated``."""

    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    longest = max(map(len, strings(event)), default=0)
    masker = Masker(secret_fields=[], max_field_chars=limit)
    masked = copy.deepcopy(event)
    masker.apply(masked)
    for text in strings({k: v for k, v in masked.items() if k != "truncated"}):
        assert len(text) <= limit or "…[truncated: " in text
    assert bool(masked.get("truncated")) == (longest > limit)


async def test_the_writer_scans_the_line_it_seals_and_never_cuts_the_chain(tmp_path: Path) -> None:
    """The writer hands the line the chain made to the secret scan and the field cap (one
    serialisation): an event with a secret or a long string is changed and made again before
    it is hashed, one without is written as made; the chain's own ``prev_hash`` (71 chars) is
    longer than the smallest cap (64) and is never cut."""
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), masker=Masker(max_field_chars=64))
    long = {"decision_id": "l", "input": {"request": {"model": "m" * 100}}, "result": {}}
    plain = {"decision_id": "p", "input": {"subject": {"id": "s"}}, "result": {"allow": True}}
    for logged in (event(), long, plain):
        log.record(logged)
    await log.aclose()
    raw = (tmp_path / "d.jsonl").read_bytes()
    assert b"gk-secret" not in raw and b"m" * 65 not in raw
    entries = [json.loads(line) for line in raw.splitlines()]
    by_id = {e["decision_id"]: e for e in entries}
    assert by_id["l"]["truncated"] == ["/input/request/model"]
    assert by_id["l"]["input"]["request"]["model"] == "m" * 64 + "…[truncated: 100 chars]"
    assert "/input/request/headers/Authorization" in by_id["d"]["erased"]
    assert "truncated" not in by_id["p"] and "erased" not in by_id["p"]
    for before, after in itertools.pairwise(entries):
        assert after["gatekeeper"]["prev_hash"] == entry_hash(before)
    for line, entry in zip(raw.splitlines(), entries, strict=True):
        assert canonical_json(entry) == line
