from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gatekeeper.audit import DecisionLog, DecisionRecord, JsonlFileSink, rfc3339_ns


def test_timestamps_match_opa_formatting() -> None:
    assert rfc3339_ns(1_559_592_436_939_402_185) == "2019-06-03T20:07:16.939402185Z"
    assert rfc3339_ns(1_559_592_436_900_000_000) == "2019-06-03T20:07:16.9Z"
    assert rfc3339_ns(1_559_592_436_000_000_000) == "2019-06-03T20:07:16Z"


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


async def test_events_are_written_in_order(tmp_path: Path) -> None:
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"))
    for i in range(100):
        log.record({"decision_id": str(i)})
    await log.aclose()
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert [json.loads(line)["decision_id"] for line in lines] == [str(i) for i in range(100)]


async def test_overflow_drops_are_counted_and_reported_as_a_gap(tmp_path: Path) -> None:
    log = DecisionLog(JsonlFileSink(tmp_path / "d.jsonl"), queue_size=5)
    for i in range(20):  # the writer cannot run in between: the queue overflows
        log.record({"decision_id": str(i)})
    assert log.dropped == 15
    await log.flush()
    log.record({"decision_id": "after"})
    await log.aclose()
    events = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    gaps = [e for e in events if "gap" in e.get("gatekeeper", {})]
    assert gaps and gaps[0]["gatekeeper"]["gap"]["dropped"] == 15
    assert events[-1]["decision_id"] == "after"
    await asyncio.sleep(0)
