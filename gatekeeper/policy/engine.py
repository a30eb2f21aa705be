"""The policy-engine protocol and what every engine shares: the decision check and its counters.

An engine evaluates one rule (``data.gatekeeper.decision`` by default) for an input document and
returns a ``Verdict``: the validated ``Decision`` and the policy revision that produced it. An
engine never returns an allow on failure: an error, a timeout, an undefined decision or one that
does not validate against ``Decision`` raises a ``PolicyError`` (the middleware refuses with 503
``policy_error``), and is counted by kind in ``status()["errors"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from gatekeeper.contract import Decision
from gatekeeper.errors import InvalidDecisionError, PolicyError, PolicyEvaluationError
from gatekeeper.health import PartHealth
from gatekeeper.policy.quota_templates import validation_context
from gatekeeper.policy.repo import PolicySource

UNDEFINED = object()

#: Kinds of engine failure counted in ``status()["errors"]``.
ERROR_KINDS = ("evaluation", "timeout", "unavailable", "undefined", "invalid")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A validated decision and the policy revision that produced it."""

    decision: Decision
    revision: str


class PolicyEngine(Protocol):
    """Evaluates the decision rule for one input document.

    ``activate`` makes another revision the active one atomically: decisions already being
    evaluated finish under the old revision, later ones use the new one, and a revision that
    does not load, compile or pass its own tests is rejected with ``PolicyLoadError`` while the
    old one stays active.
    """

    name: str

    @property
    def revision(self) -> str:
        """The active revision ('' before any revision is active)."""
        ...

    async def verdict(self, input_doc: dict[str, Any]) -> Verdict:
        """The validated decision and its revision. Raises ``PolicyError``, never allows."""
        ...

    async def decide(self, input_doc: dict[str, Any]) -> Decision:
        """``verdict(input_doc).decision``."""
        ...

    async def evaluate_raw(self, input_doc: dict[str, Any]) -> tuple[Any, str]:
        """The decision rule's raw value (or ``UNDEFINED``) and its revision, unvalidated and
        uncounted: for conformance checks and replay."""
        ...

    async def activate(self, source: PolicySource) -> None:
        """Make ``source`` the active revision, or raise ``PolicyLoadError`` and keep the old."""
        ...

    async def start(self) -> None:
        """Connect and load the first revision ahead of the first request (optional: engines
        also start lazily on their first decision)."""
        ...

    def status(self) -> dict[str, Any]:
        """Engine name, active revision, decision and error counts (the metrics read them)."""
        ...

    async def health(self) -> PartHealth:
        """For ``/readyz``: ok once a revision is active (and, for OPA, the server holds it);
        the detail is ``status()`` led by the engine's name and revision."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class EngineCounters:
    """Decisions and failures of one engine, by kind."""

    decisions: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))

    def failed(self, kind: str, error: PolicyError) -> PolicyError:
        """Count a failure of ``kind`` and hand the error back for raising."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        return error

    def verdict(self, validate: Callable[[], Decision], revision: str, other: str) -> Verdict:
        """The verdict of ``validate()`` under ``revision``, counted: a decision that does not
        validate fails as ``invalid``, any other ``PolicyError`` as ``other``."""
        try:
            decision = validate()
        except InvalidDecisionError as exc:
            raise self.failed("invalid", exc) from exc
        except PolicyError as exc:
            raise self.failed(other, exc) from exc
        self.decisions += 1
        return Verdict(decision, revision)

    def as_dict(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "errors": dict(self.errors)}


def decision_from_value(value: Any, input_doc: dict[str, Any] | None = None) -> Decision:
    """Validate a raw decision value; undefined or malformed raises ``PolicyError``.

    With the ``input_doc`` it was evaluated for, quota templates are filled in
    (``policy.quota_templates``), as gatekeeper enforces them.
    """
    if value is UNDEFINED:
        raise PolicyEvaluationError("the decision rule is undefined for this input")
    try:
        return Decision.model_validate(value, context=validation_context(input_doc))
    except ValidationError as exc:
        raise _invalid(exc) from exc


def decision_from_json(raw: str | bytes, input_doc: dict[str, Any] | None = None) -> Decision:
    """Validate a decision given as JSON text (pydantic parses it: faster than two steps)."""
    try:
        return Decision.model_validate_json(raw, context=validation_context(input_doc))
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise PolicyEvaluationError(f"engine returned invalid JSON: {exc}") from exc
        raise _invalid(exc) from exc


def _invalid(exc: ValidationError) -> InvalidDecisionError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "decision"
    return InvalidDecisionError(f"invalid decision at {where}: {first['msg']}")


def dumps_input(input_doc: dict[str, Any]) -> str:
    """The input document as JSON text, as every engine sends it."""
    return orjson.dumps(input_doc).decode()
