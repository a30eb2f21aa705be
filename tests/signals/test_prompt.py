"""The prompt text the signals read, from the bodies of all three dialects."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.signals import prompt_text

CASES: list[tuple[str, Any, str]] = [
    (
        "chat",
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": "Think step by step: 2+2?"},
            ]
        },
        "You are terse.\nThink step by step: 2+2?",
    ),
    (
        "chat-parts",
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be exact."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe"},
                        {"type": "image_url", "image_url": {"url": "data:..."}},
                    ],
                },
            ]
        },
        "Be exact.\nDescribe",
    ),
    ("responses-string", {"instructions": "Be brief.", "input": "hello"}, "Be brief.\nhello"),
    (
        "responses-items",
        {
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "old"}]},
                {"type": "function_call_output", "call_id": "c", "output": "42"},
                {"role": "user", "content": [{"type": "input_text", "text": "new"}]},
            ]
        },
        "new",
    ),
    (
        "messages",
        {
            "system": [{"type": "text", "text": "System text"}],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}],
                },
                {"role": "user", "content": "Show your reasoning"},
            ],
        },
        "System text\nShow your reasoning",
    ),
    ("not-an-object", ["messages"], ""),
    ("no-prompt", {"model": "m"}, ""),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_instructions_and_last_user_turn(body: Any, expected: str) -> None:
    assert prompt_text(body) == expected


def test_long_prompts_keep_both_ends() -> None:
    body = {"messages": [{"role": "user", "content": "BEGIN " + "x" * 10_000 + " END"}]}
    text = prompt_text(body, limit=100)
    assert len(text) == 100
    assert text.startswith("BEGIN") and text.endswith("END")
