"""The decision log."""

from gatekeeper.audit.events import DecisionRecord, new_decision_id, rfc3339_ns
from gatekeeper.audit.log import DecisionLog, JsonlFileSink, Sink

__all__ = [
    "DecisionLog",
    "DecisionRecord",
    "JsonlFileSink",
    "Sink",
    "new_decision_id",
    "rfc3339_ns",
]
