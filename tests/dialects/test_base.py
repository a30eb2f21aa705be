"""What every dialect's shaper shares: modes, and bodies that are not objects."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.dialects import AnthropicMessages, OpenAIChat, OpenAIResponses
from tests.dialects.streams import now, shaper

DIALECTS = [OpenAIChat(), OpenAIResponses(), AnthropicMessages()]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("mode", ["full", "summary", "truncate", "redact", "drop"])
def test_every_mode_is_enforced_as_itself(dialect: Any, mode: str) -> None:
    s = shaper(dialect, mode)
    assert (s.stats.mode, s.stats.applied_mode, s.removes_reasoning) == (mode, mode, mode != "full")


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_non_object_json_bodies_are_left_alone(dialect: Any) -> None:
    for document in ([1, 2], "text", None):
        assert now(shaper(dialect).shape_json(document)) is document
