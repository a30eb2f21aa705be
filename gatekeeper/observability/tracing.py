"""OpenTelemetry spans: one per request, one per stage, when an SDK is configured.

Only ``opentelemetry-api`` is a dependency. Until an application installs an SDK tracer provider
(``opentelemetry.trace.set_tracer_provider``) nothing is created: each request costs one check of
the global provider. Once one is installed, the request span is started when the request arrives
(its parent is the caller's ``traceparent``, and it is the current span while the app or upstream
runs, so instrumented clients nest under it) and the stage spans are written when the request
ends, from the stage timings the middleware already keeps, so the stages themselves carry no
tracing code. Every span has the decision id as the ``gatekeeper.decision_id`` attribute.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import Scope

from gatekeeper.observability.metrics import APP_TIMER, stage_name

if TYPE_CHECKING:
    from gatekeeper.audit import DecisionRecord

_NO_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


class _HeaderGetter(Getter[list[tuple[bytes, bytes]]]):
    """Reads W3C trace-context headers straight from ASGI's ``(bytes, bytes)`` pairs."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()


class RequestTrace:
    """The live request span and the context token to restore when it ends."""

    __slots__ = ("span", "token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self.span = span
        self.token = token


class Tracing:
    """Creates gatekeeper's spans, or nothing when tracing is off or no SDK is configured."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tracer: trace.Tracer | None = None
        self._next_look = 0.0

    def use_provider(self, provider: trace.TracerProvider) -> None:
        """Trace with ``provider`` instead of the global one (tests, embedding apps)."""
        from gatekeeper._version import __version__

        self._tracer = provider.get_tracer("gatekeeper", __version__)

    @property
    def active(self) -> bool:
        """Whether spans are being recorded (tracing on and an SDK provider present)."""
        if not self.enabled:
            return False
        if self._tracer is None:
            # Looking up the global provider reads os.environ: at most once a second, so an SDK
            # installed after start-up is picked up within a second, at no per-request cost.
            now = time.monotonic()
            if now < self._next_look:
                return False
            self._next_look = now + 1.0
            provider = trace.get_tracer_provider()
            if isinstance(provider, _NO_SDK):
                return False
            self.use_provider(provider)
        return True

    def start(self, scope: Scope, record: DecisionRecord) -> RequestTrace | None:
        """Start the request span (``None`` when inactive) and make it current."""
        if not self.active:
            return None
        assert self._tracer is not None
        parent = propagate.extract(scope["headers"], getter=_GETTER)
        span = self._tracer.start_span(
            f"gatekeeper {record.method}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=record.unix_ns,
            attributes={
                "gatekeeper.decision_id": record.decision_id,
                "http.request.method": record.method,
                "url.path": record.path,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return RequestTrace(span, token)

    def finish(
        self,
        handle: RequestTrace,
        record: DecisionRecord,
        outcome: tuple[str, str],
        log_ns: int,
    ) -> None:
        """Write the stage spans, annotate and end the request span, restore the context."""
        assert self._tracer is not None
        span = handle.span
        try:
            parent_ctx = trace.set_span_in_context(span)
            _stage_spans(self._tracer, parent_ctx, record, log_ns)
            span.set_attribute("gatekeeper.outcome", outcome[0])
            span.set_attribute("gatekeeper.reason", outcome[1])
            if record.revision is not None:
                span.set_attribute("gatekeeper.policy.revision", record.revision)
            if record.status is not None:
                span.set_attribute("http.response.status_code", record.status)
                if record.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, outcome[1]))
            if record.upstream_status is not None:
                span.set_attribute("gatekeeper.upstream.status_code", record.upstream_status)
            if record.upstream_error is not None:
                span.set_attribute("gatekeeper.upstream.error", record.upstream_error)
            span.end()
        finally:
            otel_context.detach(handle.token)  # type: ignore[arg-type]


def _stage_spans(
    tracer: trace.Tracer,
    parent: otel_context.Context,
    record: DecisionRecord,
    log_ns: int,
) -> None:
    # The stages ran one after the other from the request's start, in the order they were
    # timed; shaping ran inside the app stage, so it is an attribute there, not a span.
    cursor = record.unix_ns
    shaping = record.metrics.get("timer_gatekeeper_shape_ns")
    for timer, nanos in record.metrics.items():
        if timer == "timer_gatekeeper_shape_ns":
            continue
        name = "app" if timer == APP_TIMER else stage_name(timer)
        span = tracer.start_span(
            f"gatekeeper.{name}",
            context=parent,
            start_time=cursor,
            attributes={"gatekeeper.decision_id": record.decision_id},
        )
        if timer == APP_TIMER and shaping is not None:
            span.set_attribute("gatekeeper.shaping_ns", shaping)
        cursor += nanos
        span.end(end_time=cursor)
    end = time.time_ns()
    span = tracer.start_span(
        "gatekeeper.log",
        context=parent,
        start_time=end - log_ns,
        attributes={"gatekeeper.decision_id": record.decision_id},
    )
    span.end(end_time=end)
