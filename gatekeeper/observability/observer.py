"""``Observability``: what the middleware calls to be observed, in three hooks.

- ``serve(scope, receive, send)``: answers the operations endpoints (liveness, readiness,
  metrics) at their configured paths, before any protection applies. On the app's port they
  say little to anyone: liveness and readiness their status only, metrics nothing; the detail
  and the metrics go to a request bearing ``observability.token`` (or to anyone with
  ``public_detail``), and are always served on the separate metrics port (``metrics_port``).
- ``start(scope, record)``: at the start of a protected request; returns the live trace span
  handle, or ``None`` (no SDK, the usual case).
- ``finish(record, handle, log_started_ns)``: after the decision event is queued; a handful of
  histogram observations and counter increments, the stage spans, the access-log line.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from starlette.types import Message, Receive, Scope, Send

from gatekeeper.errors import ConfigurationError
from gatekeeper.observability.collectors import RuntimeCollector, add_process_metrics
from gatekeeper.observability.health import liveness, readiness
from gatekeeper.observability.metrics import GatekeeperMetrics
from gatekeeper.observability.tracing import RequestTrace, Tracing
from gatekeeper.observability.workers import WorkerMetrics

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from gatekeeper.audit import DecisionLog, DecisionRecord
    from gatekeeper.health import Health
    from gatekeeper.identity import Identifier
    from gatekeeper.network import GeoLocator
    from gatekeeper.policy import PolicyEngine
    from gatekeeper.quota import QuotaStore
    from gatekeeper.settings import ObservabilitySettings

log = logging.getLogger("gatekeeper")
#: On ``/readyz`` answers (and ``/metrics`` ones with ``multiprocess_dir``): the worker's pid.
WORKER_PID_HEADER = b"x-gatekeeper-worker-pid"
access_log = logging.getLogger("gatekeeper.access")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ObservedParts:
    """The runtime's parts observability reads: readiness asks the engine, identity, quotas,
    log, GeoIP database and intel for their health; the metrics read their counters, and the
    runtime's own ``counters``."""

    engine: PolicyEngine
    identity: Identifier
    quotas: QuotaStore
    decision_log: DecisionLog
    geo: GeoLocator | None = None
    #: The shared-intelligence indicators (``signals.intel_path``), when configured.
    intel: Health | None = None
    #: Events the runtime counts by name (``Gatekeeper.counters``), read at scrape.
    counters: dict[str, int] = field(default_factory=dict)

    def readiness_checks(self) -> dict[str, Health]:
        """The checks of ``/readyz``, by name, in the document's order."""
        checks: dict[str, Health] = {
            "policy": self.engine,
            "subjects": self.identity,
            "quotas": self.quotas,
            "decision_log": self.decision_log,
        }
        if self.geo is not None:
            # degraded while a changed database stands refused (the last good one serves).
            checks["geoip"] = self.geo
        if self.intel is not None:
            # degraded likewise while changed shared-intelligence files stand refused.
            checks["intel"] = self.intel
        return checks


class Observability:
    """Health endpoints, metrics, traces and the access log of one runtime's parts."""

    def __init__(self, settings: ObservabilitySettings, parts: ObservedParts) -> None:
        self.settings = settings
        #: Owned here; the collector only refers to it (the metrics listener's threads hold
        #: the registry, and must not keep the parts, the policy engine among them, alive).
        self.parts = parts
        self._checks = parts.readiness_checks()
        self.metrics = GatekeeperMetrics()
        self.metrics.registry.register(RuntimeCollector(weakref.ref(parts)))
        add_process_metrics(self.metrics.registry)
        #: Every worker's metrics, merged at scrape (``observability.multiprocess_dir``).
        self.workers = _worker_metrics(self.metrics.registry, settings)
        #: What ``/metrics`` and the metrics listener expose.
        self.exposition: CollectorRegistry = (
            self.metrics.registry if self.workers is None else self.workers.registry
        )
        self.tracing = Tracing(settings.tracing)
        self._access = settings.access_log
        self._endpoints: dict[str, str] = {}
        for path, kind in (
            (settings.liveness_path, "liveness"),
            (settings.readiness_path, "readiness"),
            (settings.metrics_path, "metrics"),
        ):
            if path:
                self._endpoints[path] = kind
        #: The paths ``serve`` answers; the middleware checks a request's path against it.
        self.paths = frozenset(self._endpoints)
        self._server: WSGIServer | None = None
        self._started = settings.metrics_port is None and self.workers is None
        self._token = (
            b"Bearer " + settings.token.get_secret_value().encode()
            if settings.token is not None and settings.token.get_secret_value()
            else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the operations endpoints ----------------------------------------------------------

    def authorized(self, scope: Scope) -> bool:
        """Whether a request to the app's port may see the detail and the metrics."""
        if self.settings.public_detail:
            return True
        if self._token is None:
            return False
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._token)
        return False

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request to an operations endpoint."""
        kind = self._endpoints[scope["path"]]
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, scope, 405, b'{"error":"method not allowed"}', allow=True)
            return
        detail = self.authorized(scope)
        if kind == "metrics" and not detail:
            await self._refuse_metrics(scope, send)
            return
        if kind == "metrics":
            if self.workers is None:
                body = generate_latest(self.exposition)
                await _respond(send, scope, 200, body, CONTENT_TYPE_LATEST.encode())
                return
            # Reads the other workers' snapshot files: off the event loop.
            body = await asyncio.to_thread(generate_latest, self.exposition)
            await _respond(send, scope, 200, body, CONTENT_TYPE_LATEST.encode(), pid=True)
            return
        if kind == "liveness":
            document = liveness() if detail else {"status": "ok"}
            await _respond(send, scope, 200, orjson.dumps(document))
            return
        ready, document = await self.readiness()
        if not detail:  # store URLs, paths, errors and counts are for operators
            body = orjson.dumps({"status": document["status"]})
            await _respond(send, scope, 200 if ready else 503, body)
            return
        body = orjson.dumps(document, default=str)
        await _respond(send, scope, 200 if ready else 503, body, pid=True)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, detail)``: every part's check, and which worker process answered."""
        ready, document = await readiness(
            self._checks,
            self.settings.readiness_timeout_seconds,
            degraded_ok=self.settings.ready_when_degraded,
        )
        document["pid"] = os.getpid()  # which worker answered: each reports its own parts
        return ready, document

    async def _refuse_metrics(self, scope: Scope, send: Send) -> None:
        if self._token is not None:
            body = b'{"error":"metrics need observability.token (Authorization: Bearer)"}'
            await _respond(send, scope, 401, body, challenge=True)
            return
        body = b'{"error":"metrics are served on the metrics port (observability.metrics_port)"}'
        await _respond(send, scope, 404, body)

    def start_listener(self) -> None:
        """Start, once, the separate metrics listener (``metrics_port``) and the writing of
        this worker's metrics snapshots (``multiprocess_dir``): threads, not the loop."""
        if self._started:
            return
        self._started = True
        try:  # the listener's threads ask the loop for readiness
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if self.workers is not None:
            self.workers.start()
        port = self.settings.metrics_port
        if port is None:
            return
        try:
            server, _thread = start_http_server(
                port, addr=self.settings.metrics_host, registry=self.exposition
            )
            server.set_app(self._listener_app(server.get_app()))
        except OSError as exc:
            # e.g. several workers of one server: the first one serves the port. Not fatal:
            # the request path does not depend on it, and metrics_path still answers.
            log.error("metrics listener on port %d not started: %s", port, exc)
            return
        self._server = server
        log.info("metrics listener on %s:%d", self.settings.metrics_host, server.server_port)

    def _listener_app(self, metrics: Any) -> Callable[..., Iterable[bytes]]:
        """The metrics port's WSGI app: liveness and the readiness detail at their paths
        (``/healthz`` and ``/readyz`` when those are disabled on the app's port), the metrics
        everywhere else. Only operators reach this port (``metrics_host``)."""
        live = self.settings.liveness_path or "/healthz"
        ready_path = self.settings.readiness_path or "/readyz"

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == live:
                return _wsgi_json(start_response, 200, liveness())
            if path == ready_path:
                ready, document = self._readiness_from_thread()
                return _wsgi_json(start_response, 200 if ready else 503, document)
            result: Iterable[bytes] = metrics(environ, start_response)
            return result

        return app

    def _readiness_from_thread(self) -> tuple[bool, dict[str, Any]]:
        loop = self._loop
        if loop is None or loop.is_closed():
            return False, {"status": "not_ready", "error": "the event loop is not running"}
        future = asyncio.run_coroutine_threadsafe(self.readiness(), loop)
        try:
            return future.result(timeout=self.settings.readiness_timeout_seconds + 5)
        except Exception as exc:  # timeout, loop stopped: not ready, say why
            future.cancel()
            return False, {"status": "not_ready", "error": type(exc).__name__}

    @property
    def listener_port(self) -> int | None:
        """The port the separate metrics listener is bound to (``None`` when there is none)."""
        return self._server.server_port if self._server is not None else None

    async def aclose(self) -> None:
        """Stop the separate metrics listener; write this worker's last metrics snapshot."""
        if self.workers is not None:
            await asyncio.to_thread(self.workers.stop)
        server, self._server = self._server, None
        if server is not None:
            # shutdown() waits for the serving thread's poll loop: off the event loop.
            await asyncio.to_thread(server.shutdown)
            server.server_close()

    # -- per request -----------------------------------------------------------------------

    def start(self, scope: Scope, record: DecisionRecord) -> RequestTrace | None:
        """Called when a protected request starts."""
        if not self._started:
            self.start_listener()
        return self.tracing.start(scope, record)

    def finish(
        self, record: DecisionRecord, handle: RequestTrace | None, log_started_ns: int
    ) -> None:
        """Called once the request's decision event is queued. Never raises."""
        try:
            log_ns = time.perf_counter_ns() - log_started_ns
            outcome = self.metrics.observe(record, log_ns)
            if handle is not None:
                self.tracing.finish(handle, record, outcome, log_ns)
            if self._access:
                _access_line(record, outcome)
        except Exception:
            log.exception("recording metrics for decision %s failed", record.decision_id)


def _worker_metrics(
    registry: CollectorRegistry, settings: ObservabilitySettings
) -> WorkerMetrics | None:
    """The snapshot writer and merger, when a multiprocess directory is set."""
    directory = settings.multiprocess_dir
    if directory is None:
        from_env = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not from_env:
            return None
        directory = Path(from_env)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"observability.multiprocess_dir {directory}: {exc}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigurationError(f"observability.multiprocess_dir {directory}: not writable")
    return WorkerMetrics(registry, directory, settings.multiprocess_interval_seconds)


def _access_line(record: DecisionRecord, outcome: tuple[str, str]) -> None:
    subject = (record.input or {}).get("subject") or {}
    network = (record.input or {}).get("network") or {}
    latency_ms = round((time.perf_counter_ns() - record.started_ns) / 1e6, 3)
    access_log.info(
        "%s %s %s %s/%s %.1fms",
        record.method,
        record.path,
        record.status,
        outcome[0],
        outcome[1],
        latency_ms,
        extra={
            "decision_id": record.decision_id,
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "outcome": outcome[0],
            "reason": outcome[1],
            "subject_id": subject.get("id"),
            "client_ip": network.get("client_ip"),
            "upstream_status": record.upstream_status,
            "upstream_error": record.upstream_error,
            "latency_ms": latency_ms,
        },
    )


async def _respond(
    send: Send,
    scope: Scope,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    *,
    allow: bool = False,
    pid: bool = False,
    challenge: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    if challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    if pid:  # which worker process answered
        headers.append((WORKER_PID_HEADER, str(os.getpid()).encode()))
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    payload = b"" if scope["method"] == "HEAD" else body
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _wsgi_json(start_response: Callable[..., Any], status: int, document: Any) -> list[bytes]:
    body = orjson.dumps(document, default=str)
    reason = {200: "OK", 503: "Service Unavailable"}[status]
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            (WORKER_PID_HEADER.decode(), str(os.getpid())),
        ],
    )
    return [body]


class ShapingClock:
    """Measures the time spent inside the ``Responder`` (shaping), net of the server's send.

    The app is given ``clock.around(responder)``; the responder is given ``clock.downstream``.
    """

    __slots__ = ("_inner", "_responder", "downstream_ns", "total_ns")

    def __init__(self, send: Send) -> None:
        self._inner = send
        self._responder: Send | None = None
        self.total_ns = 0
        self.downstream_ns = 0

    async def downstream(self, message: Message) -> None:
        started = time.perf_counter_ns()
        try:
            await self._inner(message)
        finally:
            self.downstream_ns += time.perf_counter_ns() - started

    def around(self, responder: Send) -> Send:
        self._responder = responder
        return self._timed

    async def _timed(self, message: Message) -> None:
        assert self._responder is not None
        started = time.perf_counter_ns()
        try:
            await self._responder(message)
        finally:
            self.total_ns += time.perf_counter_ns() - started

    @property
    def shaping_ns(self) -> int:
        return max(0, self.total_ns - self.downstream_ns)


__all__ = ["Observability", "ObservedParts", "ShapingClock"]
