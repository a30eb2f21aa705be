"""Reasoning modes end to end: the demo over HTTP, every dialect, mode and transport, read by the
official SDKs; continuity across tool-use round trips; the reasoning budget; the decision log.

One demo process serves every mode: a copy of the default policy pack maps test tiers to modes
(``t-full``, ``t-summary``, …) and a subjects file gives each tier a key.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import anthropic_client, openai_client
from tests.servers import ROOT, DemoServer, demo_server

pytestmark = pytest.mark.e2e

QUESTION = "Is 9.11 larger than 9.8?"
MODES = ["full", "summary", "truncate", "redact", "drop"]
EXPOSURE: dict[str, dict[str, Any]] = {
    "full": {"mode": "full"},
    "summary": {"mode": "summary", "max_tokens": 24},
    "truncate": {"mode": "truncate", "max_tokens": 12},
    "redact": {"mode": "redact"},
    "drop": {"mode": "drop"},
    "budget": {"mode": "full", "budget_quota": "reasoning_tokens"},
}
TRUNCATED = " [reasoning truncated]"
REDACTED = "[reasoning redacted]"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def _policy_pack(root: Path) -> Path:
    """The default pack with test tiers: one per mode, roomy quotas, a small reasoning budget."""
    pack = root / "policies"
    # Without the pack's own tests and conformance cases: they assert the default tiers, and a
    # pack whose tests fail is refused at load.
    shutil.copytree(
        ROOT / "policies", pack, ignore=shutil.ignore_patterns("*_test.rego", "conformance")
    )
    config = pack / "gatekeeper" / "config"
    reasoning = {
        "default": {"mode": "drop"},
        "by_tier": {
            f"t-{name}": {"min_kyc": "email", "exposure": exposure}
            for name, exposure in EXPOSURE.items()
        },
    }
    (config / "reasoning" / "data.json").write_text(json.dumps(reasoning))
    roomy = {"name": "requests", "unit": "requests", "capacity": 1000, "rate": 1000, "period": 60}
    tiers: dict[str, Any] = {f"t-{name}": {"quotas": [roomy]} for name in EXPOSURE}
    budget = {
        "name": "reasoning_tokens",
        "unit": "reasoning_tokens",
        "capacity": 40,
        "rate": 1,
        "period": 86400,
    }
    tiers["t-budget"] = {"quotas": [roomy, budget]}
    (config / "tiers" / "data.json").write_text(
        json.dumps({"default_tier": "t-drop", "tiers": tiers})
    )
    return pack


def _subjects(root: Path) -> Path:
    lines = []
    for name in [*EXPOSURE, "drop-other"]:
        tier = "t-drop" if name == "drop-other" else f"t-{name}"
        lines += [
            "[[subjects]]",
            f'key = "gk-{name}"',
            f'id = "subject-{name}"',
            f'tier = "{tier}"',
            'kyc_level = "business"',
            "",
        ]
    path = root / "subjects.toml"
    path.write_text("\n".join(lines))
    return path


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {
        "GATEKEEPER_POLICY__PATH": str(_policy_pack(root)),
        "GATEKEEPER_IDENTITY__SUBJECTS_FILE": str(_subjects(root)),
        # No distillation signals: these tests ask the same question many times, and the
        # anti-extraction pack would rightly cap the exposure of such a subject.
        "GATEKEEPER_SIGNALS__ENABLED": "false",
        **extra,
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    root = tmp_path_factory.mktemp("modes")
    with demo_server(root, **_env(root)) as server:
        yield server


@pytest.fixture(scope="module")
def redis_demo(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[DemoServer]:
    """The same, with quotas and the reasoning vault in a real Redis."""
    root = tmp_path_factory.mktemp("modes-redis")
    with demo_server(root, **_env(root, GATEKEEPER_QUOTA__STORAGE=redis_url)) as server:
        yield server


# --- what a client sees, per dialect ------------------------------------------------------------


def chat_reasoning(demo: DemoServer, mode: str, stream: bool) -> tuple[str, str, dict[str, Any]]:
    """(answer, reasoning, usage) of a chat completion as the openai SDK reads it."""
    client = openai_client(demo, f"gk-{mode}")
    params: dict[str, Any] = {
        "model": "demo-reasoner",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if stream:
        with client.chat.completions.stream(
            **params, stream_options={"include_usage": True}
        ) as events:
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(**params)
    message = completion.choices[0].message
    reasoning = getattr(message, "reasoning_content", None) or ""
    usage = completion.usage.model_dump() if completion.usage else {}
    return message.content or "", reasoning, usage


def responses_reasoning(
    demo: DemoServer, mode: str, stream: bool
) -> tuple[str, str, dict[str, Any]]:
    client = openai_client(demo, f"gk-{mode}")
    if stream:
        with client.responses.stream(model="demo-reasoner", input=QUESTION) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(model="demo-reasoner", input=QUESTION)
    reasoning = [item for item in response.output if item.type == "reasoning"]
    for item in reasoning:
        assert item.encrypted_content is None or mode == "full"
    text = " ".join(p.text for item in reasoning for p in item.summary)
    usage = response.usage.model_dump() if response.usage else {}
    return response.output_text, text, usage


def anthropic_reasoning(
    demo: DemoServer, mode: str, stream: bool
) -> tuple[str, str, dict[str, Any]]:
    client = anthropic_client(demo, f"gk-{mode}")
    params: dict[str, Any] = {
        "model": "demo-reasoner",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params)
    thinking = [b for b in message.content if b.type == "thinking"]
    if mode != "full":
        assert all(b.signature.startswith("gk1.") for b in thinking)  # type: ignore[union-attr]
    text = "".join(b.thinking for b in thinking)  # type: ignore[union-attr]
    answer = "".join(b.text for b in message.content if b.type == "text")
    return answer, text, message.usage.model_dump()


READERS = {
    "openai_chat": chat_reasoning,
    "openai_responses": responses_reasoning,
    "anthropic_messages": anthropic_reasoning,
}
REASONING_COUNT = {
    "openai_chat": ("completion_tokens_details", "reasoning_tokens"),
    "openai_responses": ("output_tokens_details", "reasoning_tokens"),
    "anthropic_messages": ("output_tokens_details", "thinking_tokens"),
}


@pytest.fixture(scope="module")
def full_reasoning(demo: DemoServer) -> dict[str, str]:
    """What each dialect's reasoning is when shown whole."""
    return {name: read(demo, "full", False)[1] for name, read in READERS.items()}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dialect", list(READERS))
def test_every_dialect_mode_and_transport(
    demo: DemoServer, full_reasoning: dict[str, str], dialect: str, mode: str, stream: bool
) -> None:
    answer, reasoning, usage = READERS[dialect](demo, mode, stream)
    original = full_reasoning[dialect]
    assert answer  # the SDK parsed the response and the answer is intact
    assert "Step 1" in original
    if mode == "full":
        assert reasoning == original
    elif mode == "drop":
        assert reasoning == ""
    elif mode == "redact":
        assert reasoning == REDACTED
    elif mode == "truncate":
        assert reasoning == original[: 12 * 4] + TRUNCATED
    else:
        assert reasoning.startswith("[summary] ")
        summary = reasoning.removeprefix("[summary] ")
        assert 0 < len(summary) <= 24 * 4
        assert summary in original or all(s.strip() in original for s in summary.split(". "))
    outer, inner = REASONING_COUNT[dialect]
    shown = usage[outer][inner]
    if mode in ("drop", "redact"):
        assert shown == 0  # as if the model had produced none
    elif mode == "full":
        assert shown > 0
    else:
        assert 0 < shown < len(original.split())


def test_summary_and_truncation_agree_between_json_and_stream(demo: DemoServer) -> None:
    for dialect, read in READERS.items():
        for mode in ("summary", "truncate"):
            assert read(demo, mode, False)[1] == read(demo, mode, True)[1], (dialect, mode)


def _logged(demo: DemoServer, decision_id: str) -> dict[str, Any]:
    """The decision event of one response (the log is written in the background)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for event in demo.events():
            if event.get("decision_id") == decision_id:
                return event
        time.sleep(0.05)
    raise AssertionError(f"no decision event {decision_id}")


@pytest.mark.parametrize("mode", MODES)
def test_decision_log_records_mode_and_reasoning_tokens(demo: DemoServer, mode: str) -> None:
    client = openai_client(demo, f"gk-{mode}")
    raw = client.chat.completions.with_raw_response.create(
        model="demo-reasoner", messages=[{"role": "user", "content": QUESTION}]
    )
    reasoning_tokens = raw.parse().usage.completion_tokens_details.reasoning_tokens  # type: ignore[union-attr]
    event = _logged(demo, raw.headers["x-gatekeeper-decision-id"])
    logged = event["gatekeeper"]["enforcement"]["reasoning"]
    assert (logged["mode"], logged["applied_mode"]) == (mode, mode)
    assert logged["seen_tokens"] > 0
    assert logged["seen_tokens"] == logged["exposed_tokens"] + logged["removed_tokens"]
    assert logged["exposed_tokens"] == reasoning_tokens  # what the client's usage says
    if mode == "full":
        assert logged["removed_tokens"] == 0
    if mode in ("drop", "redact"):
        assert logged["exposed_tokens"] == 0


# --- continuity: tool-use round trips -------------------------------------------------------------


def _anthropic_tool_turns(
    demo: DemoServer, key: str, *, replay_as: str | None = None, stream: bool = False
) -> anthropic.types.Message:
    """A tool call, then the tool result sent back with the assistant turn as received."""
    tools: Any = [{"name": "weather", "description": "Weather", "input_schema": WEATHER}]
    history: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    client = anthropic_client(demo, key)
    params: dict[str, Any] = {"model": "demo-reasoner", "max_tokens": 2048, "tools": tools}
    if stream:
        with client.messages.stream(messages=history, **params) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(messages=history, **params)
    call = next(b for b in first.content if b.type == "tool_use")
    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
        },
    ]
    second_client = anthropic_client(demo, replay_as or key)
    return second_client.messages.create(messages=history, **params)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("mode", ["drop", "summary", "truncate", "redact"])
def test_anthropic_tool_round_trip_works_without_the_client_seeing_thinking(
    demo: DemoServer, mode: str, stream: bool
) -> None:
    answer = _anthropic_tool_turns(demo, f"gk-{mode}", stream=stream)
    assert "weather tool returned: Sunny" in "".join(
        b.text for b in answer.content if b.type == "text"
    )


def test_anthropic_replay_of_another_subjects_turn_restores_nothing(demo: DemoServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        _anthropic_tool_turns(demo, "gk-drop", replay_as="gk-drop-other")
    assert "Expected `thinking` or `redacted_thinking`" in caught.value.message


def _responses_tool_turns(
    demo: DemoServer, key: str, *, replay_as: str | None = None, stream: bool = False
) -> openai.types.responses.Response:
    """Stateless use (store: false): the output sent back as input with the tool's output."""
    tools: Any = [{"type": "function", "name": "weather", "parameters": WEATHER}]
    items: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    client = openai_client(demo, key)
    params: dict[str, Any] = {
        "model": "demo-reasoner",
        "tools": tools,
        "store": False,
        "include": ["reasoning.encrypted_content"],
    }
    if stream:
        with client.responses.stream(input=items, **params) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(input=items, **params)
    call = next(i for i in first.output if i.type == "function_call")
    items += [i.model_dump(exclude_none=True) for i in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"})
    return openai_client(demo, replay_as or key).responses.create(input=items, **params)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("mode", ["drop", "summary", "truncate", "redact"])
def test_responses_stateless_tool_round_trip_gets_its_reasoning_back(
    demo: DemoServer, mode: str, stream: bool
) -> None:
    answer = _responses_tool_turns(demo, f"gk-{mode}", stream=stream)
    assert "weather tool returned: Sunny" in answer.output_text


def test_responses_replay_of_another_subjects_items_restores_nothing(demo: DemoServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _responses_tool_turns(demo, "gk-drop", replay_as="gk-drop-other")
    assert "without its required 'reasoning' item" in caught.value.message


def test_chat_tool_round_trip_gets_reasoning_content_back(demo: DemoServer) -> None:
    tools: Any = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}]
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    client = openai_client(demo, "gk-drop")
    first = client.chat.completions.create(model="demo-reasoner", messages=messages, tools=tools)
    message = first.choices[0].message
    assert getattr(message, "reasoning_content", None) is None
    assert message.tool_calls
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "Sunny"},
    ]
    second = client.chat.completions.create(model="demo-reasoner", messages=messages, tools=tools)
    assert "weather tool returned: Sunny" in (second.choices[0].message.content or "")
    other = openai_client(demo, "gk-drop-other")
    with pytest.raises(openai.BadRequestError):
        other.chat.completions.create(model="demo-reasoner", messages=messages, tools=tools)


def test_restoration_is_in_the_decision_log(demo: DemoServer) -> None:
    client = anthropic_client(demo, "gk-summary")
    tools: Any = [{"name": "weather", "description": "Weather", "input_schema": WEATHER}]
    history: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    params: dict[str, Any] = {"model": "demo-reasoner", "max_tokens": 2048, "tools": tools}
    first = client.messages.with_raw_response.create(messages=history, **params)
    message = first.parse()
    call = next(b for b in message.content if b.type == "tool_use")
    history += [
        {
            "role": "assistant",
            "content": [b.model_dump(exclude_none=True) for b in message.content],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id}]},
    ]
    second = client.messages.with_raw_response.create(messages=history, **params)
    continuity = [
        _logged(demo, raw.headers["x-gatekeeper-decision-id"])["gatekeeper"]["enforcement"][
            "reasoning"
        ]["continuity"]
        for raw in (first, second)
    ]
    assert continuity[0]["kept"] == 1 and continuity[0]["restored"] == 0
    assert continuity[1]["restored"] == 1


def test_continuity_through_redis(redis_demo: DemoServer) -> None:
    answer = _anthropic_tool_turns(redis_demo, "gk-drop", stream=True)
    assert any(b.type == "text" for b in answer.content)
    assert "weather tool returned" in _responses_tool_turns(redis_demo, "gk-summary").output_text
    with pytest.raises(anthropic.BadRequestError):
        _anthropic_tool_turns(redis_demo, "gk-drop", replay_as="gk-drop-other")


# --- the reasoning budget -------------------------------------------------------------------------


def test_spent_reasoning_budget_degrades_to_drop(demo: DemoServer) -> None:
    client = openai_client(demo, "gk-budget")
    seen = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="demo-reasoner", messages=[{"role": "user", "content": QUESTION}]
        )
        message = raw.parse().choices[0].message
        assert message.content  # never refused
        seen.append(getattr(message, "reasoning_content", None))
        event = _logged(demo, raw.headers["x-gatekeeper-decision-id"])
        logged = event["gatekeeper"]["enforcement"]["reasoning"]
    assert seen[0] and seen[1] is None  # the first response spent the 40-token budget
    assert logged["mode"] == "full" and logged["applied_mode"] == "drop"
    assert logged["budget"]["degraded"] == "budget spent"
