"""Operating gatekeeper: health and readiness, Prometheus metrics, OpenTelemetry spans, logs.

The runtime builds one ``Observability`` per ``Gatekeeper`` (``gk.observability``), handing it
the parts it observes (``ObservedParts``); the middleware calls it at three points (operations
endpoints, request start, request end). See ``docs/operations.md`` for the endpoints and every
metric.
"""

from gatekeeper.observability.health import liveness, readiness
from gatekeeper.observability.logs import (
    JsonFormatter,
    RedactingFormatter,
    configure_logging,
    logging_config,
    redact,
)
from gatekeeper.observability.metrics import GatekeeperMetrics, classify
from gatekeeper.observability.observer import Observability, ObservedParts, ShapingClock
from gatekeeper.observability.tracing import Tracing

__all__ = [
    "GatekeeperMetrics",
    "JsonFormatter",
    "Observability",
    "ObservedParts",
    "RedactingFormatter",
    "ShapingClock",
    "Tracing",
    "classify",
    "configure_logging",
    "liveness",
    "logging_config",
    "readiness",
    "redact",
]
