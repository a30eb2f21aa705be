"""Policy engines and policy repos."""

from gatekeeper.policy.embedded import EmbeddedEngine
from gatekeeper.policy.engine import PolicyEngine, decision_from_value
from gatekeeper.policy.repo import PolicySource, bundle_bytes, load_policy
from gatekeeper.policy.testing import TestResult, format_results, run_tests

__all__ = [
    "EmbeddedEngine",
    "PolicyEngine",
    "PolicySource",
    "TestResult",
    "bundle_bytes",
    "decision_from_value",
    "format_results",
    "load_policy",
    "run_tests",
]
