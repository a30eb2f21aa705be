"""What every dialect's shaper shares: modes, and bodies that are not objects."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.dialects import AnthropicMessages, OpenAIChat, OpenAIResponses
from tests.dialects.streams import shaper

DIALECTS = [OpenAIChat(), OpenAIResponses(), AnthropicMessages()]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("mode", ["summary", "truncate", "redact", "drop"])
def test_modes_not_implemented_yet_are_enforced_as_drop(dialect: Any, mode: str) -> None:
    s = shaper(dialect, mode)
    assert (s.stats.mode, s.stats.applied_mode, s.removes_reasoning) == (mode, "drop", True)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_non_object_json_bodies_are_left_alone(dialect: Any) -> None:
    for document in ([1, 2], "text", None):
        assert shaper(dialect).shape_json(document) is document
