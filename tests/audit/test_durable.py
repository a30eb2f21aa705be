"""Durable routes through the middleware: answered means on disk; otherwise refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import Gatekeeper, Settings
from gatekeeper.audit import JsonlFileSink
from tests.audit.conftest import complete_lines
from tests.servers import DEMO_CONFIG, demo_client

CHAT = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "Is 9.11 > 9.8?"}]}
HEADERS = {"authorization": "Bearer gk-demo-enterprise"}


class FullDisk(JsonlFileSink):
    """A real file sink on a disk that has just filled up."""

    def write_batch(self, lines: list[bytes]) -> None:
        if any(b'"kind":"decision"' in line for line in lines):
            raise OSError(28, "No space left on device")
        super().write_batch(lines)


@pytest.fixture
async def gatekeeper(tmp_path: Path) -> AsyncIterator[Gatekeeper]:
    settings = Settings.load(
        DEMO_CONFIG,
        audit={"path": tmp_path / "decisions.jsonl", "durable_paths": ["/v1/chat/*"]},
    )
    gk = Gatekeeper.from_settings(settings)
    yield gk
    await gk.aclose()


def logged(path: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(x) for x in complete_lines(path)]
    return {e["decision_id"]: e for e in lines if e["gatekeeper"]["kind"] == "decision"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_answered_durable_request_is_already_on_disk(
    gatekeeper: Gatekeeper, stream: bool
) -> None:
    async with demo_client(gatekeeper) as http:
        r = await http.post(
            "/v1/chat/completions", json={**CHAT, "stream": stream}, headers=HEADERS
        )
        on_disk = logged(gatekeeper.settings.audit.path)  # read before anything else runs
    assert r.status_code == 200
    event = on_disk[r.headers["x-gatekeeper-decision-id"]]
    enforcement = event["gatekeeper"]["enforcement"]
    assert enforcement["durable"] is True and enforcement["status"] == 200
    assert enforcement["reasoning"]["mode"] == "full"


async def test_a_refusal_on_a_durable_route_is_durable_too(gatekeeper: Gatekeeper) -> None:
    async with demo_client(gatekeeper) as http:
        r = await http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": "gk-nope"})
        on_disk = logged(gatekeeper.settings.audit.path)
    assert r.status_code == 401
    assert (
        on_disk[r.headers["x-gatekeeper-decision-id"]]["gatekeeper"]["enforcement"]["status"] == 401
    )


async def test_other_routes_are_not_held(gatekeeper: Gatekeeper) -> None:
    async with demo_client(gatekeeper) as http:
        r = await http.post("/v1/messages", json={**CHAT, "max_tokens": 64}, headers=HEADERS)
        await gatekeeper.decision_log.flush()
    event = logged(gatekeeper.settings.audit.path)[r.headers["x-gatekeeper-decision-id"]]
    assert "durable" not in event["gatekeeper"]["enforcement"]


async def test_when_the_log_cannot_write_the_request_is_refused(gatekeeper: Gatekeeper) -> None:
    log = gatekeeper.decision_log
    log.sink.close()  # the full disk's sink takes the chain's lock in its place
    sealer = log.writer.sealer  # the thread sealer: the full disk is in this process
    log.sink = log.sinks[0] = sealer.sink = sealer.sinks[0] = FullDisk(
        gatekeeper.settings.audit.path
    )
    async with demo_client(gatekeeper) as http:
        r = await http.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "decision_log_unavailable"
    assert "choices" not in r.json()  # the model's answer never left
