"""The embedded engine: Microsoft's regorus, evaluated in-process.

Facts designed around (see DESIGN.md): a regorus ``Engine`` may only be used on the thread that
created it, so this engine keeps one compiled engine per thread (built from the same
``PolicySource`` the first time a thread evaluates, never per request); it holds the GIL while
evaluating, so policies must stay cheap; and only the ``*_as_json`` calls are used, because
sets of objects do not convert to Python values.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import orjson
import regorus

from gatekeeper.contract import Decision
from gatekeeper.errors import PolicyEvaluationError, PolicyLoadError
from gatekeeper.policy.engine import UNDEFINED, decision_from_value
from gatekeeper.policy.repo import PolicySource

# Rust backtraces would otherwise be appended to every error message.
os.environ.pop("RUST_BACKTRACE", None)

_UNDEFINED_JSON = '"<undefined>"'


def compile_source(source: PolicySource) -> Any:
    """A regorus engine holding every module and the data of ``source``."""
    engine = regorus.Engine()
    for name, text in sorted(source.modules.items()):
        try:
            engine.add_policy(name, text)
        except Exception as exc:  # regorus raises plain RuntimeError with the parser message
            raise PolicyLoadError(f"{name}: {_first_lines(exc)}") from exc
    if source.data:
        try:
            engine.add_data_json(orjson.dumps(source.data).decode())
        except Exception as exc:
            raise PolicyLoadError(f"data: {_first_lines(exc)}") from exc
    return engine


def _first_lines(exc: BaseException, n: int = 6) -> str:
    return "\n".join(str(exc).strip().splitlines()[:n])


class EmbeddedEngine:
    """Evaluates one compiled policy revision in-process."""

    name = "embedded"

    def __init__(self, source: PolicySource, decision: str = "data.gatekeeper.decision") -> None:
        self.source = source
        self.decision_rule = decision
        self._local = threading.local()
        # Compile once now so a broken revision fails at load time, not at the first request.
        self._local.engine = compile_source(source)
        self._check_rule_exists(self._local.engine)

    @property
    def revision(self) -> str:
        return self.source.revision

    def _check_rule_exists(self, engine: Any) -> None:
        package, _, _ = self.decision_rule.rpartition(".")
        if package not in engine.get_packages():
            raise PolicyLoadError(f"no package {package} defines {self.decision_rule}")

    def _engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = compile_source(self.source)
        return engine

    def evaluate_json(self, input_json: str) -> str:
        """The decision rule's value as JSON (``"<undefined>"`` when undefined)."""
        engine = self._engine()
        try:
            engine.set_input_json(input_json)
            result: str = engine.eval_rule_as_json(self.decision_rule)
        except Exception as exc:
            raise PolicyEvaluationError(f"evaluation failed: {_first_lines(exc, 3)}") from exc
        return result

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        """The decision rule's raw value, or ``UNDEFINED``."""
        raw = self.evaluate_json(orjson.dumps(input_doc).decode())
        if raw.strip() == _UNDEFINED_JSON:
            return UNDEFINED
        return orjson.loads(raw)

    async def decide(self, input_doc: dict[str, Any]) -> Decision:
        # Evaluated on the calling (event-loop) thread: regorus engines are thread-bound and a
        # default-pack evaluation takes tens of microseconds, less than a thread hop.
        return decision_from_value(self.evaluate(input_doc))

    async def aclose(self) -> None:
        return None
