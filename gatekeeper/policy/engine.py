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
from functools import partial
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from gatekeeper.contract import Decision, QuotaSpec
from gatekeeper.errors import InvalidDecisionError, PolicyError, PolicyEvaluationError
from gatekeeper.health import PartHealth
from gatekeeper.policy.quota_templates import (
    TemplateSlot,
    fill_slots,
    resolve_quotas,
    template_slots,
    validation_context,
)
from gatekeeper.policy.repo import PolicySource

UNDEFINED = object()

#: Kinds of engine failure counted in ``status()["errors"]``.
ERROR_KINDS = ("evaluation", "timeout", "unavailable", "undefined", "invalid")


#: The decision as the decision log records it, built on request (``Verdict.result``).
ResultOf = Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A validated decision and the policy revision that produced it.

    ``result``, when the engine has one, returns what
    ``decision.model_dump(mode="json", exclude_none=True)`` returns (a new dict each call),
    for less: the decision cache keeps each decision's dump and patches in the quotas' keys
    and costs of the request (``DecisionCache.resolve``)."""

    decision: Decision
    revision: str
    result: ResultOf | None = None


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

    def verdict(
        self,
        validate: Callable[[], Decision | tuple[Decision, ResultOf | None]],
        revision: str,
        other: str,
    ) -> Verdict:
        """The verdict of ``validate()`` under ``revision``, counted: a decision that does not
        validate fails as ``invalid``, any other ``PolicyError`` as ``other``. ``validate``
        may return the decision with its ``Verdict.result``."""
        try:
            validated = validate()
        except InvalidDecisionError as exc:
            raise self.failed("invalid", exc) from exc
        except PolicyError as exc:
            raise self.failed(other, exc) from exc
        self.decisions += 1
        if isinstance(validated, tuple):
            return Verdict(validated[0], revision, validated[1])
        return Verdict(validated, revision)

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


class DecisionCache:
    """Validated decisions by their JSON text: ``decision_from_json`` at the cost of a lookup.

    A policy returns the same few decisions again and again (the allowed decision of each tier,
    a handful of refusals), and validating one against ``Decision`` costs tens of microseconds
    per request. What validation makes of a decision's JSON depends on the input only through
    its quota templates (``policy.quota_templates``): the ``key`` and ``cost`` they leave out,
    and whether a token quota applies at all (a model call, the decision's reasoning mode). So
    an entry is the decision validated once, by its text and whether the request is a model
    call; a later request gets it with the templates' keys and costs filled in again from its
    own input (``resolve_quotas``, as validation does), the quotas that differ copied with the
    new values. A key is any string and a cost any integer from 0, so those copies need no
    validation; a cost that is not (an input document gatekeeper did not build) is validated
    in full, as is every decision the cache does not hold. Failures are never cached.

    Decisions are frozen (``contract.Decision``): one may be handed to many requests.
    At most ``size`` entries are kept, the least recently used dropped first.
    """

    __slots__ = ("_entries", "hits", "misses", "size")

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: dict[tuple[str, bool], _Cached] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def as_dict(self) -> dict[str, int]:
        """Entries held, and requests served from them or validated in full."""
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}

    def decision(self, raw: str, input_doc: dict[str, Any]) -> Decision:
        """``decision_from_json(raw, input_doc)``, from the cache where it can be."""
        return self.resolve(raw, input_doc)[0]

    def resolve(self, raw: str, input_doc: dict[str, Any]) -> tuple[Decision, ResultOf | None]:
        """``decision(raw, input_doc)``, and for a decision from the cache its
        ``Verdict.result`` (None for one validated in full)."""
        request = input_doc.get("request")
        model_call = isinstance(request.get("dialect"), str) if isinstance(request, dict) else False
        key = (raw, model_call)
        entries = self._entries
        cached = entries.pop(key, None)
        if cached is None:
            self.misses += 1
            decision = decision_from_json(raw, input_doc)
            if self.size > 0:
                if len(entries) >= self.size:
                    del entries[next(iter(entries))]
                entries[key] = _Cached.of(raw, decision, model_call)
            return decision, None
        entries[key] = cached  # most recently used last
        filled = cached.filled(input_doc)
        if filled is None:  # a key or cost the copies cannot take: validate in full
            self.misses += 1
            return decision_from_json(raw, input_doc), None
        self.hits += 1
        return filled[0], partial(cached.result, *filled)


class _Cached:
    """One validated decision, and its quotas as the policy wrote them (templates unfilled),
    taken apart once into what each request fills in (``template_slots``)."""

    __slots__ = ("decision", "dumped", "mode", "quotas", "slots")

    def __init__(
        self,
        decision: Decision,
        quotas: list[Any] | None,
        mode: str,
        slots: list[TemplateSlot] | None = None,
    ) -> None:
        self.decision = decision
        self.quotas = quotas
        self.mode = mode
        self.slots = slots
        #: ``decision``'s dump as JSON (``result``), made at the first request that asks.
        self.dumped: bytes | None = None

    @classmethod
    def of(cls, raw: str, decision: Decision, model_call: bool) -> _Cached:
        if not decision.quotas:
            return cls(decision, None, "drop")
        # The value validation read, as ``Decision._fill_quota_templates`` reads it.
        value = orjson.loads(raw)
        reasoning = value.get("reasoning")
        mode = reasoning.get("mode", "drop") if isinstance(reasoning, dict) else "drop"
        quotas = value["quotas"]
        compiled = template_slots(quotas, model_call, mode)
        # The cache key holds model_call, so every request of the entry keeps these quotas.
        slots = compiled[0] if compiled and compiled[1] == len(decision.quotas) else None
        return cls(decision, quotas, mode, slots)

    def filled(
        self, input_doc: dict[str, Any]
    ) -> tuple[Decision, list[tuple[int, str, int]]] | None:
        """The decision with its quota templates filled in from ``input_doc``, and the
        positions, keys and costs of the quotas that differ from the cached decision's; None
        when a filled-in key or cost would need validating."""
        decision = self.decision
        if self.quotas is None:
            return decision, []
        specs = decision.quotas
        if self.slots is not None:
            filled = fill_slots(self.slots, input_doc)
        else:
            quotas = resolve_quotas(self.quotas, input_doc, self.mode)
            if len(quotas) != len(specs):
                return None
            filled = [(i, q.get("key"), q.get("cost")) for i, q in enumerate(quotas)]
        changed: list[QuotaSpec] | None = None
        changes: list[tuple[int, str, int]] = []
        for i, key, cost in filled:
            spec = specs[i]
            if key == spec.key and cost == spec.cost and type(cost) is int:
                continue
            if type(key) is not str or type(cost) is not int or cost < 0:
                return None
            if changed is None:
                changed = list(specs)
            changed[i] = spec.with_valid(key=key, cost=cost)
            changes.append((i, key, cost))
        if changed is None:
            return decision, changes
        return decision.with_valid(quotas=changed), changes

    def result(self, decision: Decision, changes: list[tuple[int, str, int]]) -> dict[str, Any]:
        """``decision.model_dump(mode="json", exclude_none=True)`` for a decision ``filled``
        made with ``changes``: the cached decision's dump, parsed anew (the caller may change
        it), with those quotas' keys and costs (never None, so never left out)."""
        dumped = self.dumped
        if dumped is None:
            try:
                dumped = orjson.dumps(self.decision.model_dump(mode="json", exclude_none=True))
            except TypeError:  # an integer orjson cannot write: dump each decision itself
                dumped = b""
            self.dumped = dumped
        if not dumped:
            return decision.model_dump(mode="json", exclude_none=True)
        document: dict[str, Any] = orjson.loads(dumped)
        if changes:
            quotas = document["quotas"]
            for i, key, cost in changes:
                quotas[i]["key"] = key
                quotas[i]["cost"] = cost
        return document


def _invalid(exc: ValidationError) -> InvalidDecisionError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "decision"
    return InvalidDecisionError(f"invalid decision at {where}: {first['msg']}")


def dumps_input(input_doc: dict[str, Any]) -> str:
    """The input document as JSON text, as every engine sends it."""
    return orjson.dumps(input_doc).decode()
