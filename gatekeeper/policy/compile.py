"""Compiling a policy revision into a regorus engine (the interpreter).

Kept apart from the embedded engine (``embedded.py``) so that the offline tools (``gatekeeper
policy test``, ``eval``) need neither the contract's pydantic models nor the engine machinery.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import regorus

from gatekeeper.errors import PolicyLoadError
from gatekeeper.policy.repo import PolicySource

# Rust backtraces would otherwise be appended to every error message.
os.environ.pop("RUST_BACKTRACE", None)


def compile_source(source: PolicySource, *, tests: bool = True, coverage: bool = False) -> Any:
    """A regorus engine holding the modules (with or without the tests) and data of ``source``;
    with ``coverage``, one that records which lines its evaluations reach."""
    engine = regorus.Engine()
    if coverage:
        engine.set_enable_coverage(True)
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
