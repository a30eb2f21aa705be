"""``GatekeeperMiddleware``: the pure-ASGI shell around the request pipeline.

What it does itself, per request: routes the operations endpoints (health, readiness,
metrics) and unprotected paths past everything; gives the request its decision id and record;
admits it or sheds it (``request.max_admitting``: 503 ``overloaded`` before any work); wraps a
durable route's ``send``; runs ``Pipeline`` (``pipeline.py``: identify, inspect, locate,
signals, decide, quotas, app and shaping, settle); and, whatever happened, hands the one
decision event to the decision log. Every response carries ``x-gatekeeper-decision-id``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatekeeper.audit import DecisionRecord, DurableResponse, new_decision_id
from gatekeeper.audit.setup import is_durable_path
from gatekeeper.dialects import Dialect
from gatekeeper.errors import ConfigurationError, Overloaded, client_message
from gatekeeper.pipeline import (
    DECISION_ID_HEADER,
    UPSTREAM_SCOPE_KEY,
    Pipeline,
    log_internal,
    refuse_unenforced,
    request_dialect,
    send_error,
)
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings

log = logging.getLogger("gatekeeper")

#: Shedding is logged at most once in this many seconds (with the count since the last line).
SHED_LOG_SECONDS = 10.0
#: Scope key holding the request's decision id, for the app's own log lines (the proxy's).
DECISION_ID_SCOPE_KEY = "gatekeeper.decision_id"


class GatekeeperMiddleware:
    """Protects an ASGI app: ``app.add_middleware(GatekeeperMiddleware, settings=...)``.

    Pass ``settings`` (a ``Settings``), or nothing to read them from the environment and
    ``GATEKEEPER_CONFIG``; or pass a ready ``gatekeeper`` (a ``Gatekeeper``) to share one
    instance between apps.

    Constructing it builds every part the settings name (policy load and compile, quota
    storage, subject store, GeoIP, decision log) and raises ``ConfigurationError`` for a bad
    one. Starlette and FastAPI construct middleware lazily, on the first ASGI event; raised
    there, the error would be swallowed by uvicorn's ``--lifespan auto`` (the server then
    answers plain-text 500s). So when constructed inside a running event loop, a
    configuration error fails the lifespan start-up instead (uvicorn exits with the message),
    and without a lifespan every request gets a 503 in the API's format. Build the
    ``Gatekeeper`` at import (``gatekeeper=Gatekeeper.from_settings(...)``) to fail before
    the server starts, under any lifespan mode.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        gatekeeper: Gatekeeper | None = None,
    ) -> None:
        self.app = app
        #: The configuration error met when built lazily (see the class docstring).
        self.broken: ConfigurationError | None = None
        try:
            self.gk = gatekeeper or Gatekeeper.from_settings(settings or Settings.load())
        except ConfigurationError as exc:
            if not _in_running_loop():
                raise  # built at import or start-up: the error stops the process there
            log.critical("gatekeeper configuration error: %s", exc)
            self.broken = exc
            return
        self.settings = self.gk.settings
        self.pipeline = Pipeline(self.gk, app)
        self._unprotected = frozenset(self.settings.request.unprotected_paths)
        self._ops = self.gk.observability
        #: Requests between arrival and the app (or their refusal): see ``request.max_admitting``.
        self.admitting = 0
        self._max_admitting = self.settings.request.max_admitting
        self._shed_logged_at = -SHED_LOG_SECONDS
        self._shed_since_log = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.broken is not None:
            await _refuse_misconfigured(self.broken, scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        # Health and metrics endpoints come first: unprotected, and ahead of the app's own.
        if scope["type"] == "http" and scope["path"] in self._ops.paths:
            await self._ops.serve(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] in self._unprotected:
            await self.app(scope, receive, send)
            return
        record = DecisionRecord(
            decision_id=new_decision_id(), path=scope["path"], method=scope["method"]
        )
        client = scope.get("client")
        if client:
            record.requested_by = f"{client[0]}:{client[1]}"
        scope[DECISION_ID_SCOPE_KEY] = record.decision_id
        trace = self._ops.start(scope, record)
        dialect = request_dialect(scope)
        durable = self._durable_response(scope, send, record, dialect)
        admission = _Admission(self)
        try:
            if admission.shed:
                await self._shed(durable or send, record, dialect)
            else:
                await self.pipeline.run(
                    scope, receive, durable or send, record, dialect, admission.release
                )
            if durable is not None:
                await durable.finish()
        except Exception:
            if durable is not None:  # the server will answer (500): make the event durable first
                await durable.finish(send_held=False)
            raise
        finally:
            admission.release()
            log_started = time.perf_counter_ns()
            if not record.logged:  # a durable response has already written its event
                self.gk.decision_log.record(record.to_event(self.settings.audit.labels))
            self._ops.finish(record, trace, log_started)

    def _durable_response(
        self, scope: Scope, send: Send, rec: DecisionRecord, dialect: Dialect | None
    ) -> DurableResponse | None:
        """On a durable route: a ``send`` that completes the response only once its event is
        fsynced (or refuses it); see ``gatekeeper.audit.durable``."""
        audit = self.settings.audit
        if not audit.durable_paths or not is_durable_path(audit.durable_paths, scope["path"]):
            return None

        async def refuse(send: Send, status: int, code: str, message: str) -> None:
            log_internal(rec, code, message)
            await send_error(send, dialect, rec, status, code, client_message(code, message), [])

        return DurableResponse(
            send,
            self.gk.decision_log,
            rec,
            labels=audit.labels,
            timeout=audit.durable_timeout_seconds,
            refuse=refuse,
        )

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._ops.start_listener()  # the separate metrics port, if one is configured
                await self.gk.start()  # policy engine connection and reload watcher
            if message["type"] == "lifespan.shutdown.complete":
                await self.gk.aclose()
            await send(message)

        return wrapped

    async def _shed(self, send: Send, rec: DecisionRecord, dialect: Dialect | None) -> None:
        """Refuse a request that arrived while ``max_admitting`` others are being admitted:
        no identity, no body, no policy, no store; 503 ``overloaded`` with Retry-After."""
        self.gk.count("overloaded")
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._shed_logged_at >= SHED_LOG_SECONDS:
            log.warning(
                "overloaded: %d requests refused (503 overloaded) in the last %.0f s, "
                "%d being admitted (request.max_admitting = %d)",
                self._shed_since_log,
                min(now - self._shed_logged_at, SHED_LOG_SECONDS),
                self.admitting,
                self._max_admitting,
            )
            self._shed_logged_at, self._shed_since_log = now, 0
        error = Overloaded(
            f"gatekeeper is admitting {self._max_admitting} requests already; retry shortly"
        )
        headers = [(b"retry-after", b"1")]
        await refuse_unenforced(send, dialect, rec, error, headers)


class _Admission:
    """One request's place in ``GatekeeperMiddleware.admitting``: taken on arrival unless the
    limit is reached (then ``shed``), given back once, when the request reaches the app or ends."""

    __slots__ = ("_owner", "shed")

    def __init__(self, owner: GatekeeperMiddleware) -> None:
        limit = owner._max_admitting
        self.shed = bool(limit) and owner.admitting >= limit
        self._owner: GatekeeperMiddleware | None = None if self.shed else owner
        if self._owner is not None:
            self._owner.admitting += 1

    def release(self) -> None:
        if self._owner is not None:
            self._owner.admitting -= 1
            self._owner = None


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _refuse_misconfigured(
    error: ConfigurationError, scope: Scope, receive: Receive, send: Send
) -> None:
    """A middleware whose configuration failed when built lazily: fail the lifespan start-up
    with the message (uvicorn prints it and exits, under ``--lifespan auto`` too), and refuse
    every request (no lifespan) with a 503 naming no path or address; the log has the detail."""
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            text = f"gatekeeper configuration error: {error}"
            await send({"type": "lifespan.startup.failed", "message": text})
        else:
            await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
        return
    log.error("request refused: gatekeeper configuration error: %s", error)
    rec = DecisionRecord(decision_id=new_decision_id(), path=scope["path"], method=scope["method"])
    text = "gatekeeper is not configured correctly; the server's log says why"
    await send_error(send, request_dialect(scope), rec, 503, "gatekeeper_misconfigured", text, [])


__all__ = [
    "DECISION_ID_HEADER",
    "DECISION_ID_SCOPE_KEY",
    "UPSTREAM_SCOPE_KEY",
    "GatekeeperMiddleware",
]
