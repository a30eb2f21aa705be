"""The policy-engine protocol and the decision check every engine shares."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from gatekeeper.contract import Decision
from gatekeeper.errors import InvalidDecisionError, PolicyEvaluationError

UNDEFINED = object()


class PolicyEngine(Protocol):
    """Evaluates the decision rule for one input document."""

    name: str

    @property
    def revision(self) -> str: ...

    async def decide(self, input_doc: dict[str, Any]) -> Decision:
        """The validated decision. Raises ``PolicyError`` (never returns an allow on error)."""
        ...

    async def aclose(self) -> None: ...


def decision_from_value(value: Any) -> Decision:
    """Validate a raw decision value; undefined or malformed raises ``PolicyError``."""
    if value is UNDEFINED:
        raise PolicyEvaluationError("the decision rule is undefined for this input")
    try:
        return Decision.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "decision"
        raise InvalidDecisionError(f"invalid decision at {where}: {first['msg']}") from exc


def decision_from_json(raw: str | bytes) -> Decision:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PolicyEvaluationError(f"engine returned invalid JSON: {exc}") from exc
    return decision_from_value(value)
