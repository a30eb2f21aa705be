"""Policy engines and policy repos: loading, checking, engines, hot reload, replay."""

from gatekeeper.policy.check import CheckReport, check_source
from gatekeeper.policy.conformance import Case, CaseResult, diff_values, load_cases, parse_cases
from gatekeeper.policy.embedded import EmbeddedEngine
from gatekeeper.policy.engine import PolicyEngine, Verdict, decision_from_value
from gatekeeper.policy.factory import open_engine
from gatekeeper.policy.opa import OpaEngine
from gatekeeper.policy.reload import ReloadingEngine
from gatekeeper.policy.replay import ReplayReport, replay, replay_logs
from gatekeeper.policy.repo import PolicySource, bundle_bytes, load_policy
from gatekeeper.policy.testing import TestResult, format_results, run_tests

__all__ = [
    "Case",
    "CaseResult",
    "CheckReport",
    "EmbeddedEngine",
    "OpaEngine",
    "PolicyEngine",
    "PolicySource",
    "ReloadingEngine",
    "ReplayReport",
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
    "replay",
    "replay_logs",
    "run_tests",
]
