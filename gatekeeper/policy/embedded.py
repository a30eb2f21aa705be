"""The embedded engine: Microsoft's regorus, evaluated in-process.

Facts designed around (see DESIGN.md): a regorus ``Engine`` may only be used on the thread that
created it, so each revision keeps one compiled engine per thread (built from the same
``PolicySource`` the first time a thread evaluates it, never per request); it holds the GIL while
evaluating, so policies must stay cheap; and only the ``*_as_json`` calls are used, because
sets of objects do not convert to Python values.

Each revision is evaluated by regorus's compiled VM where that is safe (``policy.evaluator``
"auto", the default; gatekeeper/policy/vm.py rewrites the modules for it, declines what it
cannot make safe, and checks that the VM decides every conformance case like the interpreter
before using it), else by regorus's interpreter. While the VM serves, every
``verify_every``-th decision is evaluated by the interpreter as well; if the two differ, the
interpreter's decision is the one returned, and the revision stays on the interpreter.

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
import threading
import time
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from gatekeeper.contract import Decision
from gatekeeper.errors import (
    PolicyEvaluationError,
    PolicyLoadError,
)
from gatekeeper.health import PartHealth
from gatekeeper.policy.compile import compile_source, first_lines
from gatekeeper.policy.engine import (
    UNDEFINED,
    DecisionCache,
    EngineCounters,
    Verdict,
)
from gatekeeper.policy.projection import input_paths, projection_tree, projector
from gatekeeper.policy.repo import PolicySource
from gatekeeper.policy.syntax import syntax_trees
from gatekeeper.policy.vm import Vm, VmPlan, prepare

log = logging.getLogger("gatekeeper.policy")

_UNDEFINED_JSON = '"<undefined>"'
#: VM failures a revision tolerates before the interpreter takes over, when the VM has failed
#: more often than it has decided.
_VM_ERRORS_TOLERATED = 100


def check_rule_exists(engine: Any, decision_rule: str) -> None:
    """Raise ``PolicyLoadError`` unless some module declares the decision rule's package."""
    package, _, _ = decision_rule.rpartition(".")
    if package not in engine.get_packages():
        raise PolicyLoadError(f"no package {package} defines {decision_rule}")


# Per thread: revision key -> the regorus engine (and VM) that thread built for it. The engines live
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


class _Evaluators:
    """One thread's evaluators of one revision: the interpreter, and the VM if it is used."""

    __slots__ = ("engine", "vm")

    def __init__(self, engine: Any, vm: Vm | None) -> None:
        self.engine = engine
        self.vm = vm


def _thread_engines() -> dict[int, _Evaluators]:
    engines: dict[int, _Evaluators] | None = getattr(_per_thread, "engines", None)
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


@dataclass(frozen=True)
class Prepared:
    """What a revision needs besides its interpreter, worked out on any thread: the VM's plan
    (checked against the interpreter on the conformance cases) and the input paths it reads."""

    plan: VmPlan
    input_paths: list[tuple[str, ...]] | None


def prepare_revision(
    source: PolicySource, decision_rule: str, evaluator: str, engine: Any | None = None
) -> Prepared:
    """:class:`Prepared` for ``source`` (tens of milliseconds: run it off the event loop).
    ``engine``: an interpreter of ``source`` made on this thread, if the caller has one."""
    trees = syntax_trees(source.policy_modules)  # parsed once, for the VM and the paths
    if evaluator == "auto":
        engine = engine if engine is not None else compile_source(source, tests=False)
        plan = vm_plan(source, decision_rule, engine, trees)
    else:
        plan = VmPlan(None, f"policy.evaluator is {evaluator!r}")
    return Prepared(plan, input_paths(source.policy_modules, trees, source.data))


class _Revision:
    """One compiled revision: its source, and the evaluators of each thread that evaluated it."""

    def __init__(
        self,
        source: PolicySource,
        decision_rule: str,
        *,
        evaluator: str = "auto",
        verify_every: int = 100,
        prepared: Prepared | None = None,
    ) -> None:
        self.source = source
        self.decision_rule = decision_rule
        self.revision = source.revision
        self.loaded_at = time.time()
        self.key = next(_keys)
        self.verify_every = verify_every
        self.vm_decisions = 0
        self.vm_checked = 0
        self.vm_mismatches = 0
        self.vm_errors = 0
        # Compiled now, on the creating thread (the event loop's), so that no request pays
        # for it; test modules are left out: decisions never depend on them.
        engine = compile_source(source, tests=False)
        check_rule_exists(engine, decision_rule)
        self._data_json = orjson.dumps(source.data).decode()
        if prepared is None:
            prepared = prepare_revision(source, decision_rule, evaluator)
        #: The input paths the policy reads (None: all of it); only they are handed to regorus.
        self.input_paths = prepared.input_paths
        self._project = (
            None if self.input_paths is None else projector(projection_tree(self.input_paths))
        )
        self.plan = prepared.plan
        vm = Vm(self.plan, self._data_json) if self.plan.program is not None else None
        #: Why the VM is not used for this revision ("" while it is).
        self.vm_reason = self.plan.reason
        #: This revision's validated decisions, by their JSON text (``DecisionCache``).
        self.decisions = DecisionCache()
        _thread_engines()[self.key] = _Evaluators(engine, vm)
        weakref.finalize(self, _retire, self.key)

    @property
    def evaluator(self) -> str:
        return "interpreter" if self.vm_reason else "vm"

    def evaluators(self) -> _Evaluators:
        engines = _thread_engines()
        found = engines.get(self.key)
        if found is None:
            vm = Vm(self.plan, self._data_json) if self.plan.program is not None else None
            found = engines[self.key] = _Evaluators(compile_source(self.source, tests=False), vm)
        return found

    def engine(self) -> Any:
        return self.evaluators().engine

    def input_json(self, input_doc: dict[str, Any]) -> str:
        """``input_doc`` as regorus gets it: as JSON, only the paths the policy reads."""
        if self._project is not None:
            input_doc = self._project(input_doc)
        return orjson.dumps(input_doc).decode()

    def evaluate_doc(self, input_doc: dict[str, Any]) -> str:
        """The decision as JSON for an input document, handed to regorus as ``input_json``."""
        return self.evaluate_json(self.input_json(input_doc))

    def evaluate_json(self, input_json: str) -> str:
        own = self.evaluators()
        if own.vm is None or self.vm_reason:
            return self._interpret(own.engine, input_json)
        try:
            result = own.vm.evaluate_json(input_json)
        except Exception as exc:
            # The interpreter decides (and raises, if the policy really fails on this input).
            self.vm_errors += 1
            log.debug("the VM failed (%s); the interpreter decides", first_lines(exc, 1))
            if self.vm_errors >= _VM_ERRORS_TOLERATED and self.vm_errors > self.vm_decisions:
                # Failing more often than not (its 25,000-instruction limit on large data, say):
                # each such decision costs a VM attempt on top of the interpreter's.
                why = first_lines(exc, 1)
                self.vm_reason = f"the VM failed on {self.vm_errors} decisions ({why})"
                log.warning(
                    "policy revision %s: %s; the interpreter evaluates it from now on",
                    self.revision,
                    self.vm_reason,
                )
            return self._interpret(own.engine, input_json)
        self.vm_decisions += 1
        if self.verify_every and self.vm_decisions % self.verify_every == 0:
            return self._verify(own.engine, input_json, result)
        return result

    def _verify(self, engine: Any, input_json: str, result: str) -> str:
        """The interpreter's decision; a VM that disagrees is not used again for this revision."""
        self.vm_checked += 1
        try:
            expected = self._interpret(engine, input_json)
        except PolicyEvaluationError:
            self._disagreed()  # the VM decided where the interpreter fails
            raise
        if orjson.loads(result) != orjson.loads(expected):
            self._disagreed()
        return expected

    def _disagreed(self) -> None:
        self.vm_mismatches += 1
        self.vm_reason = "the VM decided a sampled request differently from the interpreter"
        log.error(
            "policy revision %s: %s; the interpreter evaluates this revision from now on",
            self.revision,
            self.vm_reason,
        )

    def _interpret(self, engine: Any, input_json: str) -> str:
        try:
            engine.set_input_json(input_json)
            result: str = engine.eval_rule_as_json(self.decision_rule)
        except Exception as exc:
            raise PolicyEvaluationError(f"evaluation failed: {first_lines(exc, 3)}") from exc
        return result

    def vm_status(self) -> dict[str, Any]:
        return {
            "reason": self.vm_reason,
            "decisions": self.vm_decisions,
            "checked": self.vm_checked,
            "mismatches": self.vm_mismatches,
            "errors": self.vm_errors,
        }


def vm_plan(
    source: PolicySource,
    decision_rule: str,
    engine: Any,
    trees: dict[str, dict[str, Any]] | None = None,
) -> VmPlan:
    """``source`` prepared for the VM, or, if the VM may not serve it, a plan that says why.
    ``engine`` is an interpreter of it; ``trees`` its modules' parse, if the caller has it."""
    plan = prepare(source.policy_modules, source.data, decision_rule, trees)
    if plan.program is None:
        return plan
    vm = Vm(plan, orjson.dumps(source.data).decode())
    disagreement = _disagreement(engine, vm, source, decision_rule)
    return VmPlan(None, disagreement) if disagreement else plan


def _disagreement(engine: Any, vm: Vm, source: PolicySource, decision_rule: str) -> str:
    """Why the VM may not serve ``source``: a conformance case (or the sample input) it decides
    differently from the interpreter; "" when they agree on all of them."""
    from gatekeeper.policy.conformance import parse_cases, sample_input

    try:
        cases = [(case.id, case.input) for case in parse_cases(source.cases)]
    except PolicyLoadError:
        cases = []
    for case_id, doc in [*cases, ("sample-input", sample_input())]:
        raw = orjson.dumps(doc).decode()
        try:
            engine.set_input_json(raw)
            expected = engine.eval_rule_as_json(decision_rule)
        except Exception:
            continue  # the interpreter fails here too: the case's own check reports it
        try:
            got = vm.evaluate_json(raw)
        except Exception as exc:
            return f"the VM fails on case {case_id}: {first_lines(exc, 1)}"
        if orjson.loads(got) != orjson.loads(expected):
            return f"the VM decides case {case_id} differently from the interpreter"
    return ""


class EmbeddedEngine:
    """Evaluates the active policy revision in-process with regorus."""

    name = "embedded"

    def __init__(
        self,
        source: PolicySource,
        decision: str = "data.gatekeeper.decision",
        *,
        check: bool = True,
        evaluator: str = "auto",
        verify_every: int = 100,
        prepared: Prepared | None = None,
    ) -> None:
        """``prepared``: the first revision's VM plan and input paths, when a check of it
        already worked them out (``check_source``'s report)."""
        self.decision_rule = decision
        #: Whether ``activate`` runs a new revision's Rego tests and cases before accepting it.
        self.check = check
        #: "auto": regorus's VM where it is safe, else the interpreter; "interpreter": never the VM.
        self.evaluator = evaluator
        #: Every n-th VM decision is also evaluated by the interpreter (0: never).
        self.verify_every = verify_every
        self.counters = EngineCounters()
        # Compile once now so a broken revision fails at load time, not at the first request.
        self._active = self._revision(source, prepared)

    def _revision(self, source: PolicySource, prepared: Prepared | None = None) -> _Revision:
        return _Revision(
            source,
            self.decision_rule,
            evaluator=self.evaluator,
            verify_every=self.verify_every,
            prepared=prepared,
        )

    @property
    def source(self) -> PolicySource:
        return self._active.source

    @property
    def revision(self) -> str:
        return self._active.revision

    def evaluate_json(self, input_json: str) -> str:
        """The decision rule's value as JSON (``"<undefined>"`` when undefined)."""
        return self._active.evaluate_json(input_json)

    def evaluate_doc_json(self, input_doc: dict[str, Any]) -> str:
        """The decision rule's value as JSON for an input document (what a request pays)."""
        return self._active.evaluate_doc(input_doc)

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        """The decision rule's raw value, or ``UNDEFINED``."""
        raw = self.evaluate_doc_json(input_doc)
        if raw.strip() == _UNDEFINED_JSON:
            return UNDEFINED
        return orjson.loads(raw)

    async def evaluate_raw(self, input_doc: dict[str, Any]) -> tuple[Any, str]:
        """The raw decision value (or ``UNDEFINED``) and the revision that produced it."""
        active = self._active
        raw = active.evaluate_doc(input_doc)
        value = UNDEFINED if raw.strip() == _UNDEFINED_JSON else orjson.loads(raw)
        return value, active.revision

    async def verdict(self, input_doc: dict[str, Any]) -> Verdict:
        # Evaluated on the calling (event-loop) thread: regorus engines are thread-bound and a
        # default-pack evaluation takes tens of microseconds, less than a thread hop.
        active = self._active
        try:
            raw = active.evaluate_doc(input_doc)
        except PolicyEvaluationError as exc:
            raise self.counters.failed("evaluation", exc) from exc
        if raw.startswith(_UNDEFINED_JSON):
            raise self.counters.failed(
                "undefined", PolicyEvaluationError("the decision rule is undefined for this input")
            )
        validate = partial(active.decisions.resolve, raw, input_doc)
        return self.counters.verdict(validate, active.revision, "evaluation")

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
            prepared = report.prepared if self.evaluator == "auto" else None
        else:
            prepared = None
        if prepared is None:
            # The VM's rewrite, compilation and check, and the input paths: off the event loop.
            prepared = await asyncio.to_thread(
                prepare_revision, source, self.decision_rule, self.evaluator
            )
        started = time.perf_counter()
        candidate = self._revision(source, prepared)
        self._active = candidate
        log.info(
            "policy revision %s active (embedded, %s, compiled in %.1f ms)%s",
            source.revision,
            candidate.evaluator,
            (time.perf_counter() - started) * 1000,
            f": the VM is not used: {candidate.vm_reason}" if candidate.vm_reason else "",
        )

    async def start(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "revision": self.revision,
            "origin": self.source.origin,
            "loaded_at": self._active.loaded_at,
            "evaluator": self._active.evaluator,
            "input_paths": (
                None
                if self._active.input_paths is None
                else [".".join(path) for path in self._active.input_paths]
            ),
            "vm": self._active.vm_status(),
            "decision_cache": self._active.decisions.as_dict(),
            **self.counters.as_dict(),
        }

    async def health(self) -> PartHealth:
        return PartHealth(ok=bool(self.revision), detail=self.status())

    async def aclose(self) -> None:
        return None
