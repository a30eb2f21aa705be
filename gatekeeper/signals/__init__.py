"""Distillation signals: what the policy needs to tell an extraction campaign from a customer.

Computed before the policy into ``input.signals`` (docs/distillation.md): the prompt's
chain-of-thought elicitation score, template repetition, the subject's and its account
cluster's usage in rolling windows. Reads are in-process; storage (memory or a Redis stream)
only decides how gateways share what they observed.
"""

from gatekeeper.signals.clusters import ClusterIndex, cluster_id, link_key
from gatekeeper.signals.prompt import prompt_text
from gatekeeper.signals.scorer import (
    DEFAULT_PATTERNS,
    ElicitationScore,
    Pattern,
    PatternScorer,
    Scorer,
)
from gatekeeper.signals.skeleton import skeleton, template_hash
from gatekeeper.signals.stage import SignalContext, SignalStage, load_scorer, network_prefix
from gatekeeper.signals.state import USAGE_METRICS, Observation, SignalState
from gatekeeper.signals.store import MemorySignalStore, RedisSignalStore, SignalStore
from gatekeeper.signals.windows import RollingCounts, RollingTally

__all__ = [
    "DEFAULT_PATTERNS",
    "USAGE_METRICS",
    "ClusterIndex",
    "ElicitationScore",
    "MemorySignalStore",
    "Observation",
    "Pattern",
    "PatternScorer",
    "RedisSignalStore",
    "RollingCounts",
    "RollingTally",
    "Scorer",
    "SignalContext",
    "SignalStage",
    "SignalState",
    "SignalStore",
    "cluster_id",
    "link_key",
    "load_scorer",
    "network_prefix",
    "prompt_text",
    "skeleton",
    "template_hash",
]
