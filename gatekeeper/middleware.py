"""``GatekeeperMiddleware``: the pure-ASGI middleware that runs the request pipeline.

identify → locate → inspect → policy → quotas → app → shape → log. Everything before the policy
gathers facts into one ``Input``; the policy decides; everything after only enforces the
decision. Every response carries ``x-gatekeeper-decision-id`` and produces exactly one
decision-log event with that id, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatekeeper.audit import DecisionRecord, DurableResponse, new_decision_id
from gatekeeper.audit.setup import is_durable_path
from gatekeeper.contract import Decision, Network, Reason
from gatekeeper.dialects import Dialect, RequestBodyError, dialect_for_path
from gatekeeper.dialects.base import RequestFacts
from gatekeeper.errors import (
    CLIENT_MESSAGES,
    AuthenticationError,
    BodyTimeoutError,
    BodyTooLargeError,
    ClientInputError,
    ConfigurationError,
    IdentityError,
    MalformedBodyError,
    Overloaded,
    PolicyError,
    QuotaStoreError,
    client_message,
)
from gatekeeper.input_document import build_input
from gatekeeper.network import locate
from gatekeeper.observability import ShapingClock
from gatekeeper.observability.logs import redact
from gatekeeper.quota import QuotaResult, TokenReservation, rate_limit_headers
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings
from gatekeeper.shaping import Responder
from gatekeeper.shaping.enforcement import ReasoningEnforcement

log = logging.getLogger("gatekeeper")

DECISION_ID_HEADER = b"x-gatekeeper-decision-id"
#: Shedding is logged at most once in this many seconds (with the count since the last line).
SHED_LOG_SECONDS = 10.0
#: Scope key under which an app (the reverse proxy) reports ``(upstream status, error code)``.
UPSTREAM_SCOPE_KEY = "gatekeeper.upstream"
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
        self._unprotected = frozenset(self.settings.request.unprotected_paths)
        self._jurisdiction_tags = self.settings.network.tags_by_country()
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
        durable = self._durable_response(scope, send, record)
        admission = _Admission(self)
        try:
            if admission.shed:
                await self._shed(scope, durable or send, record)
            else:
                await self._handle(scope, receive, durable or send, record, admission)
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
        self, scope: Scope, send: Send, rec: DecisionRecord
    ) -> DurableResponse | None:
        """On a durable route: a ``send`` that completes the response only once its event is
        fsynced (or refuses it); see ``gatekeeper.audit.durable``."""
        audit = self.settings.audit
        if not audit.durable_paths or not is_durable_path(audit.durable_paths, scope["path"]):
            return None
        dialect = dialect_for_path(scope["path"]) if scope["method"] == "POST" else None

        async def refuse(send: Send, status: int, code: str, message: str) -> None:
            _log_internal(rec, code, message)
            await _send_error(send, dialect, rec, status, code, client_message(code, message), [])

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

    async def _shed(self, scope: Scope, send: Send, rec: DecisionRecord) -> None:
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
        dialect = dialect_for_path(scope["path"]) if scope["method"] == "POST" else None
        error = Overloaded(
            f"gatekeeper is admitting {self._max_admitting} requests already; retry shortly"
        )
        rec.decided_by = "gatekeeper"
        rec.result = {
            "allow": False,
            "status": error.status,
            "reasons": [{"code": error.code, "message": str(error)}],
        }
        headers = [(b"retry-after", b"1")]
        await _send_error(send, dialect, rec, error.status, error.code, str(error), headers)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rec: DecisionRecord,
        admission: _Admission,
    ) -> None:
        dialect = dialect_for_path(scope["path"]) if scope["method"] == "POST" else None
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        timer = _Timer(rec.metrics)

        # identify: identity.methods in order (gatekeeper/identity/identify.py)
        try:
            subject = await self.gk.identity.identify(headers, scope.get("client"))
        except (IdentityError, AuthenticationError) as exc:
            timer.lap("timer_gatekeeper_identify_ns")
            await self._refuse_unenforced(send, dialect, rec, exc.status, exc.code, str(exc))
            return
        timer.lap("timer_gatekeeper_identify_ns")

        # inspect
        body = b""
        facts = RequestFacts()
        document: Any = None
        if dialect is not None:
            limits = self.settings.request
            try:
                try:
                    async with asyncio.timeout(limits.body_timeout):
                        body = await _read_body(receive, headers, limits.max_body_bytes)
                except TimeoutError as exc:
                    raise BodyTimeoutError(
                        f"the request body did not arrive within {limits.body_timeout:g} s"
                    ) from exc
                facts, document = _inspect(dialect, body, limits.max_json_depth)
            except ClientInputError as exc:
                await self._refuse_unenforced(send, dialect, rec, exc.status, exc.code, str(exc))
                return
        timer.lap("timer_gatekeeper_inspect_ns")

        # locate
        peer = scope.get("client")
        address = self.gk.resolver.resolve(peer[0] if peer else None, headers)
        if address.spoofed or address.malformed:
            # Ignored or unreadable forwarding headers: harmless for the decision, flagged in
            # the event and counted (a spoofing client, or a misconfigured proxy chain).
            rec.forwarding = {
                "spoofed": address.spoofed,
                "malformed": address.malformed,
                "peer": address.peer_ip,
            }
            self.gk.count("forwarding_spoofed" if address.spoofed else "forwarding_malformed")
        network: Network = locate(address, self.gk.geo, self._jurisdiction_tags)
        timer.lap("timer_gatekeeper_locate_ns")

        # signals: in-process reads only (docs/distillation.md); never refuses
        user_agent = next((v.decode("latin-1") for k, v in headers if k == b"user-agent"), None)
        signals, sig = self.gk.signals, None
        if signals is not None:
            sig = await signals.inspect(
                subject,
                network,
                document,
                reasoning_requested=facts.reasoning_requested,
                estimated_tokens=facts.estimated_tokens,
                user_agent=user_agent,
            )
            timer.lap("timer_gatekeeper_signals_ns")

        input_doc = build_input(
            method=scope["method"],
            path=scope["path"],
            dialect=dialect.name if dialect else None,
            facts=facts,
            subject=subject,
            network=network,
            unix_ns=rec.unix_ns,
            user_agent=user_agent,
            signals=sig.document if sig is not None else None,
        )
        rec.input = input_doc
        rec.revision = self.gk.engine.revision

        # policy
        try:
            verdict = await self.gk.engine.verdict(input_doc)
        except PolicyError as exc:
            self.gk.count("policy_errors")
            # Logged with the decision id, masked into the record, never told to the client.
            await self._refuse_unenforced(send, dialect, rec, exc.status, exc.code, str(exc))
            return
        timer.lap("timer_rego_query_eval_ns")
        decision = verdict.decision
        rec.revision = verdict.revision  # the revision that decided, even across a hot reload
        rec.result = decision.model_dump(mode="json")
        if signals is not None and sig is not None:
            signals.observe(sig, decision)  # counted whatever happens next
        # A shadow refusal is logged, not enforced: the request continues as if allowed, held
        # to the quotas the decision carries (the default pack gives it the allowed quotas).
        if not decision.allow and not decision.shadow:
            await self._refuse(send, dialect, rec, decision, decision.status, decision.reasons)
            return

        # Reasoning budget, continuity and shaper (gatekeeper/shaping/enforcement.py).
        reasoning = ReasoningEnforcement(self.gk, dialect, subject.id, decision.reasoning)
        quota_specs = reasoning.quotas(decision.quotas)
        acquired: QuotaResult | None = None

        # quotas
        quota_headers: list[tuple[bytes, bytes]] = []
        reservation: TokenReservation | None = None
        if (decision.allow or decision.shadow) and decision.quotas:
            try:
                result = acquired = await self.gk.quotas.acquire(quota_specs)
            except QuotaStoreError as exc:
                await self._refuse_unenforced(send, dialect, rec, exc.status, exc.code, str(exc))
                return
            timer.lap("timer_gatekeeper_quota_ns")
            rec.quotas = _quota_states(result)
            quota_headers = rate_limit_headers(result)
            if not result.allowed:
                refused = result.refused
                assert refused is not None
                reason = Reason(
                    code="quota_exceeded",
                    message=f"quota {refused.name!r} exceeded; retry in {result.retry_after} s",
                )
                await self._refuse(send, dialect, rec, decision, 429, [reason], quota_headers)
                return
            # Token quotas paid the estimate; the response's real usage settles them below.
            reservation = TokenReservation.open(
                self.gk.quotas, quota_specs, result, prompt_chars=facts.prompt_features.chars
            )
        reasoning.apply_budget(acquired, decision.quotas)

        # app, with the response shaped and the headers added
        extra = [(DECISION_ID_HEADER, rec.decision_id.encode()), *quota_headers]
        extra.extend((k.lower().encode(), v.encode()) for k, v in decision.headers.items())
        # Every model request is shaped, "full" too: no byte changes, but the usage is read.
        shaper = reasoning.new_shaper()
        body = await reasoning.restore(scope, body)
        clock = ShapingClock(send) if shaper is not None else None
        downstream = clock.downstream if clock is not None else send
        responder = Responder(
            reservation.meter(downstream) if reservation is not None else downstream,
            shaper=shaper,
            extra_headers=extra,
            max_event_bytes=self.settings.request.max_event_bytes,
            before_end=reasoning.save,
        )
        app_send = clock.around(responder) if clock is not None else responder
        settled = False

        async def settle() -> None:
            # What enforcement did, for the event: when the app returns, or earlier on a durable
            # route, where the event is written before the final body chunk goes out.
            nonlocal settled
            if settled:
                return
            settled = True
            rec.status = responder.status
            stats = responder.stats
            rec.reasoning = reasoning.record(responder)
            timer.lap("timer_gatekeeper_app_ns")
            if clock is not None:
                rec.metrics["timer_gatekeeper_shape_ns"] = clock.shaping_ns
            # The reverse proxy reports what its upstream did under this scope key.
            upstream = scope.get(UPSTREAM_SCOPE_KEY)
            if upstream is not None:
                rec.upstream_status, rec.upstream_error = upstream
            if reservation is not None:
                await reservation.settle(stats, rec.quotas)
            if signals is not None and sig is not None:
                signals.settle(sig, stats, responder.status)

        if isinstance(send, DurableResponse):
            send.before_commit = settle
        admission.release()  # admitted: the app's time is not gatekeeper's admission work
        try:
            await self.app(scope, _replay(body, receive) if dialect else receive, app_send)
        except Exception as exc:
            await settle()
            self._app_failed(exc, rec)
            if responder.started:
                raise  # mid-response: only the server can end it (it closes the connection)
            # Nothing reached the client yet: answer as the API would, with the decision id.
            message = "the model API failed to answer this request"
            await _send_error(send, dialect, rec, 500, "app_error", message, [])
        finally:
            await settle()

    def _app_failed(self, exc: Exception, rec: DecisionRecord) -> None:
        """The app (or upstream) raised: log it with the decision id, record it in the event."""
        self.gk.count("app_errors")
        log.error("the app raised on decision %s", rec.decision_id, exc_info=exc)
        rec.error = {"code": "app_error", "message": type(exc).__name__}

    async def _refuse(
        self,
        send: Send,
        dialect: Dialect | None,
        rec: DecisionRecord,
        decision: Decision,
        status: int,
        reasons: list[Reason],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = list(extra or [])
        headers.extend((k.lower().encode(), v.encode()) for k, v in decision.headers.items())
        if decision.obligations.step_up_kyc is not None:
            headers.append(
                (b"x-gatekeeper-required-kyc", decision.obligations.step_up_kyc.encode())
            )
        primary = reasons[0]
        await _send_error(send, dialect, rec, status, primary.code, primary.message, headers)

    async def _refuse_unenforced(
        self,
        send: Send,
        dialect: Dialect | None,
        rec: DecisionRecord,
        status: int,
        code: str,
        message: str,
    ) -> None:
        """Refuse before (or without) a valid policy decision: gatekeeper decides, fail closed.

        ``message`` may be an exception's text naming addresses, URLs or paths: for a failure
        of gatekeeper's own parts the client gets a fixed message (``client_message``), and
        the detail goes to the log and, credentials masked, to the record's ``error``."""
        rec.decided_by = "gatekeeper"
        if code in CLIENT_MESSAGES:
            _log_internal(rec, code, message)
            message = client_message(code, message)
        if rec.result is None:
            rec.result = {
                "allow": False,
                "status": status,
                "reasons": [{"code": code, "message": message}],
            }
        await _send_error(send, dialect, rec, status, code, message, [])


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


async def _send_error(
    send: Send,
    dialect: Dialect | None,
    rec: DecisionRecord,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    document = (dialect or _default_dialect()).error_body(status, code, message)
    body = orjson.dumps(document)
    rec.status = status
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (DECISION_ID_HEADER, rec.decision_id.encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
    dialect = dialect_for_path(scope["path"]) if scope["method"] == "POST" else None
    text = "gatekeeper is not configured correctly; the server's log says why"
    await _send_error(send, dialect, rec, 503, "gatekeeper_misconfigured", text, [])


def _log_internal(rec: DecisionRecord, code: str, detail: str) -> None:
    """The detail of a refusal caused by one of gatekeeper's own parts: logged with the
    decision id, and kept (credentials masked) in the decision-log record's ``error``."""
    masked = redact(detail)
    rec.error = {"code": code, "message": masked}
    log.warning("request %s refused (%s): %s", rec.decision_id, code, masked)


def _default_dialect() -> Dialect:
    dialect = dialect_for_path("/v1/chat/completions")
    assert dialect is not None
    return dialect


async def _read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    for name, value in headers:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError as exc:
                raise MalformedBodyError("invalid Content-Length header") from exc
            if declared > limit:
                raise BodyTooLargeError(f"request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedBodyError("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _inspect(dialect: Dialect, body: bytes, max_depth: int) -> tuple[RequestFacts, Any]:
    """The dialect's facts and the parsed body (the signals stage reads its prompt text)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"request body is not valid JSON: {exc}") from exc
    # Fewer brackets than the limit cannot nest deeper than it: the walk is for the rare rest.
    if body.count(b"[") + body.count(b"{") > max_depth and _deeper_than(document, max_depth):
        raise MalformedBodyError(
            f"request body nests objects and arrays deeper than {max_depth} levels"
        )
    try:
        return dialect.read_request(document), document
    except RequestBodyError as exc:
        raise MalformedBodyError(str(exc)) from exc


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether objects and arrays in ``document`` nest more than ``limit`` levels deep."""
    if not isinstance(document, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the app, then defers to the server."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _quota_states(result: QuotaResult) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "key": s.key,
            "capacity": s.capacity,
            "remaining": round(s.remaining, 3),
            "refused": result.refused is not None and result.refused.key == s.key,
            **({"source": s.source} if s.source != "store" else {}),
        }
        for s in result.states
    ] + [{"name": name, "unchecked": True} for name in result.unchecked]


class _Timer:
    """Stage timings in nanoseconds, named like OPA's metrics."""

    __slots__ = ("_last", "_metrics")

    def __init__(self, metrics: dict[str, int]) -> None:
        self._metrics = metrics
        self._last = time.perf_counter_ns()

    def lap(self, name: str) -> None:
        now = time.perf_counter_ns()
        self._metrics[name] = now - self._last
        self._last = now


__all__ = [
    "DECISION_ID_HEADER",
    "DECISION_ID_SCOPE_KEY",
    "UPSTREAM_SCOPE_KEY",
    "GatekeeperMiddleware",
]
