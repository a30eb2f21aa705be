"""The embedded engine: Microsoft's regorus, evaluated in-process.

Facts designed around (see DESIGN.md): a regorus ``Engine`` may only be used on the thread that
created it, so each revision keeps one compiled engine per thread (built from the same
``PolicySource`` the first time a thread evaluates it, never per request); it holds the GIL while
evaluating, so policies must stay cheap; and only the ``*_as_json`` calls are used, because
sets of objects do not convert to Python values.

A new revision (``activate``) is checked on a worker thread (it compiles there, runs the repo's
Rego tests and conformance cases with an engine of its own), then compiled once more on the
calling thread, the event loop's, and swapped in with one assignment. A decision reads the
active revision once, so it is evaluated and stamped with the same revision even if a swap
happens meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import weakref
from typing import Any

import orjson
import regorus

from gatekeeper.contract import Decision
from gatekeeper.errors import (
    InvalidDecisionError,
    PolicyError,
    PolicyEvaluationError,
    PolicyLoadError,
)
from gatekeeper.policy.engine import (
    UNDEFINED,
    EngineCounters,
    Verdict,
    decision_from_json,
)
from gatekeeper.policy.repo import PolicySource

# Rust backtraces would otherwise be appended to every error message.
os.environ.pop("RUST_BACKTRACE", None)

log = logging.getLogger("gatekeeper.policy")

_UNDEFINED_JSON = '"<undefined>"'


def compile_source(source: PolicySource, *, tests: bool = True) -> Any:
    """A regorus engine holding the modules (with or without the tests) and data of ``source``."""
    engine = regorus.Engine()
    modules = source.modules if tests else source.policy_modules
    for name, text in sorted(modules.items()):
        try:
            engine.add_policy(name, text)
        except Exception as exc:  # regorus raises plain RuntimeError with the parser message
            raise PolicyLoadError(f"{name}: {first_lines(exc)}") from exc
    if source.data:
        try:
            engine.add_data_json(orjson.dumps(source.data).decode())
        except Exception as exc:
            raise PolicyLoadError(f"data: {first_lines(exc)}") from exc
    return engine


def first_lines(exc: BaseException, n: int = 6) -> str:
    """The head of a (possibly multi-line, caret-annotated) regorus error message."""
    return "\n".join(str(exc).strip().splitlines()[:n])


def check_rule_exists(engine: Any, decision_rule: str) -> None:
    """Raise ``PolicyLoadError`` unless some module declares the decision rule's package."""
    package, _, _ = decision_rule.rpartition(".")
    if package not in engine.get_packages():
        raise PolicyLoadError(f"no package {package} defines {decision_rule}")


# Per thread: revision key -> the regorus engine that thread compiled for it. The engines live
# here, not on the revision objects, because a regorus engine must also be *dropped* on the
# thread that created it (PyO3 raises otherwise), and Python may collect a revision on any
# thread (the cyclic GC runs wherever allocation triggers it). A collected revision's key is
# retired; each thread drops its own engines of retired revisions the next time it evaluates.
_per_thread = threading.local()
_retired: set[int] = set()
_retired_lock = threading.Lock()
_retired_generation = 0
_keys = itertools.count()


def _retire(key: int) -> None:
    global _retired_generation
    with _retired_lock:
        _retired.add(key)
        _retired_generation += 1


def _thread_engines() -> dict[int, Any]:
    engines: dict[int, Any] | None = getattr(_per_thread, "engines", None)
    if engines is None:
        engines = _per_thread.engines = {}
        _per_thread.generation = -1
    if _per_thread.generation != _retired_generation:
        with _retired_lock:
            dead = [key for key in engines if key in _retired]
            _per_thread.generation = _retired_generation
        for key in dead:
            del engines[key]  # dropped on this thread, the one that created it
    return engines


class _Revision:
    """One compiled revision: its source, and a regorus engine per thread that evaluated it."""

    def __init__(self, source: PolicySource, decision_rule: str) -> None:
        self.source = source
        self.decision_rule = decision_rule
        self.revision = source.revision
        self.loaded_at = time.time()
        self.key = next(_keys)
        # Compiled now, on the creating thread (the event loop's), so that no request pays
        # for it; test modules are left out: decisions never depend on them.
        engine = compile_source(source, tests=False)
        check_rule_exists(engine, decision_rule)
        _thread_engines()[self.key] = engine
        weakref.finalize(self, _retire, self.key)

    def engine(self) -> Any:
        engines = _thread_engines()
        engine = engines.get(self.key)
        if engine is None:
            engine = engines[self.key] = compile_source(self.source, tests=False)
        return engine

    def evaluate_json(self, input_json: str) -> str:
        engine = self.engine()
        try:
            engine.set_input_json(input_json)
            result: str = engine.eval_rule_as_json(self.decision_rule)
        except Exception as exc:
            raise PolicyEvaluationError(f"evaluation failed: {first_lines(exc, 3)}") from exc
        return result


class EmbeddedEngine:
    """Evaluates the active policy revision in-process with regorus."""

    name = "embedded"

    def __init__(
        self,
        source: PolicySource,
        decision: str = "data.gatekeeper.decision",
        *,
        check: bool = True,
    ) -> None:
        self.decision_rule = decision
        #: Whether ``activate`` runs a new revision's Rego tests and cases before accepting it.
        self.check = check
        self.counters = EngineCounters()
        # Compile once now so a broken revision fails at load time, not at the first request.
        self._active = _Revision(source, decision)

    @property
    def source(self) -> PolicySource:
        return self._active.source

    @property
    def revision(self) -> str:
        return self._active.revision

    def evaluate_json(self, input_json: str) -> str:
        """The decision rule's value as JSON (``"<undefined>"`` when undefined)."""
        return self._active.evaluate_json(input_json)

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        """The decision rule's raw value, or ``UNDEFINED``."""
        raw = self.evaluate_json(orjson.dumps(input_doc).decode())
        if raw.strip() == _UNDEFINED_JSON:
            return UNDEFINED
        return orjson.loads(raw)

    async def evaluate_raw(self, input_doc: dict[str, Any]) -> tuple[Any, str]:
        """The raw decision value (or ``UNDEFINED``) and the revision that produced it."""
        active = self._active
        raw = active.evaluate_json(orjson.dumps(input_doc).decode())
        value = UNDEFINED if raw.strip() == _UNDEFINED_JSON else orjson.loads(raw)
        return value, active.revision

    async def verdict(self, input_doc: dict[str, Any]) -> Verdict:
        # Evaluated on the calling (event-loop) thread: regorus engines are thread-bound and a
        # default-pack evaluation takes tens of microseconds, less than a thread hop.
        active = self._active
        try:
            raw = active.evaluate_json(orjson.dumps(input_doc).decode())
        except PolicyEvaluationError as exc:
            raise self.counters.failed("evaluation", exc) from exc
        if raw.startswith(_UNDEFINED_JSON):
            raise self.counters.failed(
                "undefined", PolicyEvaluationError("the decision rule is undefined for this input")
            )
        try:
            decision = decision_from_json(raw, input_doc)
        except InvalidDecisionError as exc:
            raise self.counters.failed("invalid", exc) from exc
        except PolicyError as exc:
            raise self.counters.failed("evaluation", exc) from exc
        self.counters.decisions += 1
        return Verdict(decision, active.revision)

    async def decide(self, input_doc: dict[str, Any]) -> Decision:
        return (await self.verdict(input_doc)).decision

    async def activate(self, source: PolicySource) -> None:
        """Check ``source`` off the event loop, compile it here, swap it in.

        Raises ``PolicyLoadError`` (the active revision stays) if it does not compile, lacks the
        decision rule, fails a Rego test or a conformance case, or yields an invalid decision.
        """
        if self.check:
            from gatekeeper.policy.check import check_source

            report = await asyncio.to_thread(check_source, source, self.decision_rule)
            report.raise_for_problems()
        started = time.perf_counter()
        candidate = _Revision(source, self.decision_rule)
        self._active = candidate
        log.info(
            "policy revision %s active (embedded, compiled in %.1f ms)",
            source.revision,
            (time.perf_counter() - started) * 1000,
        )

    async def start(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "revision": self.revision,
            "origin": self.source.origin,
            "loaded_at": self._active.loaded_at,
            **self.counters.as_dict(),
        }

    async def aclose(self) -> None:
        return None
