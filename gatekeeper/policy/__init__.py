"""Policy engines and policy repos: loading, checking, engines, hot reload.

Replaying a decision log against a policy is offline: ``gatekeeper.offline.policy.replay``.
"""

from typing import TYPE_CHECKING

from gatekeeper._lazy import lazy_exports

if TYPE_CHECKING:
    from gatekeeper.policy.check import CheckReport, check_source
    from gatekeeper.policy.conformance import Case, CaseResult, diff_values, load_cases, parse_cases
    from gatekeeper.policy.embedded import EmbeddedEngine
    from gatekeeper.policy.engine import PolicyEngine, Verdict, decision_from_value
    from gatekeeper.policy.factory import open_engine
    from gatekeeper.policy.opa import OpaEngine
    from gatekeeper.policy.reload import ReloadingEngine
    from gatekeeper.policy.repo import PolicySource, bundle_bytes, load_policy
    from gatekeeper.policy.testing import TestResult, format_results, run_tests

# Imported on first use (PEP 562): `gatekeeper policy test` needs the embedded engine, not the
# OPA client's HTTP stack.
_EXPORTS = {
    "Case": "gatekeeper.policy.conformance",
    "CaseResult": "gatekeeper.policy.conformance",
    "CheckReport": "gatekeeper.policy.check",
    "EmbeddedEngine": "gatekeeper.policy.embedded",
    "OpaEngine": "gatekeeper.policy.opa",
    "PolicyEngine": "gatekeeper.policy.engine",
    "PolicySource": "gatekeeper.policy.repo",
    "ReloadingEngine": "gatekeeper.policy.reload",
    "TestResult": "gatekeeper.policy.testing",
    "Verdict": "gatekeeper.policy.engine",
    "bundle_bytes": "gatekeeper.policy.repo",
    "check_source": "gatekeeper.policy.check",
    "decision_from_value": "gatekeeper.policy.engine",
    "diff_values": "gatekeeper.policy.conformance",
    "format_results": "gatekeeper.policy.testing",
    "load_cases": "gatekeeper.policy.conformance",
    "load_policy": "gatekeeper.policy.repo",
    "open_engine": "gatekeeper.policy.factory",
    "parse_cases": "gatekeeper.policy.conformance",
    "run_tests": "gatekeeper.policy.testing",
}


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "Case",
    "CaseResult",
    "CheckReport",
    "EmbeddedEngine",
    "OpaEngine",
    "PolicyEngine",
    "PolicySource",
    "ReloadingEngine",
    "TestResult",
    "Verdict",
    "bundle_bytes",
    "check_source",
    "decision_from_value",
    "diff_values",
    "format_results",
    "load_cases",
    "load_policy",
    "open_engine",
    "parse_cases",
    "run_tests",
]
