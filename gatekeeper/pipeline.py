"""The request pipeline: the stages every protected request runs, in this order.

::

    identify ─► inspect ─► locate ─► signals ─► decide ─► quotas ─► app + shape ─► settle
    subject     body:       client     usage,     Rego      token      the app's       usage,
    + KYC       dialect,    address,   clusters,  decision  buckets,   response,       tokens,
                model,      country,   CoT                  windows    reasoning       signals
                stream      ASN                                        shaped

Each stage is one method of ``Pipeline`` that reads and fills one ``RequestContext``. A stage
that must refuse raises ``Refusal``; the pipeline answers it in the dialect's error format and
no later stage runs. Everything before ``decide`` only gathers facts into the policy's input;
the policy decides; everything after only enforces the decision. ``GatekeeperMiddleware``
(``middleware.py``) is the ASGI shell around it: operations endpoints, admission (overload
shedding), durable routes, and writing the one decision event per request. docs/architecture.md
draws the whole path with the module of every stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatekeeper._timers import timeout
from gatekeeper.audit import DecisionRecord, DurableResponse
from gatekeeper.contract import Decision, Network, Subject
from gatekeeper.dialects import Dialect, RequestBodyError, dialect_for_path, send_error_response
from gatekeeper.dialects.base import RequestFacts
from gatekeeper.errors import (
    CLIENT_MESSAGES,
    AuthenticationError,
    BodyTimeoutError,
    BodyTooLargeError,
    ClientInputError,
    GatekeeperError,
    IdentityError,
    MalformedBodyError,
    PolicyError,
    QuotaStoreError,
    client_message,
)
from gatekeeper.input_document import build_input
from gatekeeper.network import locate
from gatekeeper.observability import ShapingClock
from gatekeeper.observability.logs import redact
from gatekeeper.quota import QuotaResult, TokenReservation, rate_limit_headers
from gatekeeper.reasoning import Responder
from gatekeeper.reasoning.enforcement import ReasoningEnforcement
from gatekeeper.runtime import Gatekeeper

log = logging.getLogger("gatekeeper")

DECISION_ID_HEADER = b"x-gatekeeper-decision-id"
#: Scope key under which an app (the reverse proxy) reports ``(upstream status, error code)``.
UPSTREAM_SCOPE_KEY = "gatekeeper.upstream"


class Refusal(Exception):
    """A stage's answer instead of the app's: the status, reason code and message the client
    gets (in the dialect's format), extra headers, and who decided.

    ``decided_by_policy``: the policy refused (its decision, with its headers and obligations,
    is already in the record); otherwise gatekeeper refused before or without a valid decision
    (fail closed), and for a failure of its own parts the client gets a fixed message
    (``CLIENT_MESSAGES``) while the detail goes to the log and the record's ``error``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        decided_by_policy: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        self.decided_by_policy = decided_by_policy


#: The facts of a request with no dialect (no body read): one instance, never changed, rather
#: than a ``RequestFacts`` and its pydantic ``PromptFeatures`` built for every request (and,
#: for a model request, thrown away by ``inspect``).
NO_FACTS = RequestFacts()


@dataclass(slots=True, eq=False)
class RequestContext:
    """What the stages know about one request, filled in stage by stage.

    Stages write here, never into ``record``: ``Pipeline.complete`` builds the record's
    decision and enforcement parts from these fields once, at the end (or just before a
    durable route commits its event).
    """

    scope: Scope
    receive: Receive
    send: Send
    record: DecisionRecord
    dialect: Dialect | None
    headers: list[tuple[bytes, bytes]]
    timer: _Timer
    # identify
    subject: Subject | None = None
    # inspect
    body: bytes = b""
    facts: RequestFacts = field(default_factory=lambda: NO_FACTS)
    document: Any = None
    # locate
    network: Network | None = None
    forwarding: dict[str, Any] | None = None
    # signals
    user_agent: str | None = None
    signals: Any = None
    # decide
    input: dict[str, Any] | None = None
    revision: str | None = None
    decision: Decision | None = None
    #: The decision as the log records it, when the engine has it cheaper (``Verdict.result``).
    result_of: Callable[[], dict[str, Any]] | None = None
    # quotas
    reasoning: ReasoningEnforcement | None = None
    quotas: QuotaResult | None = None
    quota_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    reservation: TokenReservation | None = None
    # app + settle
    responder: Responder | None = None
    settled: dict[tuple[str, str], dict[str, Any]] | None = None
    # refused: gatekeeper's own refusal (before or without a valid decision)
    refused_by_gatekeeper: tuple[int, str, str] | None = None
    completed: bool = False


class Pipeline:
    """The stages over one ``Gatekeeper``'s parts, in front of one ASGI app."""

    def __init__(self, gk: Gatekeeper, app: ASGIApp) -> None:
        self.gk = gk
        self.app = app
        self.settings = gk.settings
        self._jurisdiction_tags = self.settings.network.tags_by_country()
        self._reasoning = gk.reasoning_setup()
        #: The stages before the app, in order: each reads and fills the context, or refuses.
        self.stages = (
            self.identify,
            self.inspect,
            self.locate,
            self.observe_signals,
            self.decide,
            self.enforce_quotas,
        )

    async def run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: DecisionRecord,
        dialect: Dialect | None,
        admitted: Callable[[], None],
    ) -> None:
        """Every stage in order, then the app; ``dialect`` is ``request_dialect(scope)``, and
        ``admitted()`` is called once the request reaches the app (its place in the admission
        count is given back)."""
        ctx = RequestContext(
            scope, receive, send, record, dialect, scope["headers"], _Timer(record.metrics)
        )
        try:
            try:
                for stage in self.stages:
                    await stage(ctx)
            except Refusal as refusal:
                await self.refuse(ctx, refusal)
                return
            admitted()  # admitted: the app's time is not gatekeeper's admission work
            await self.call_app(ctx)
        finally:
            self.complete(ctx)  # a no-op unless a stage raised something unforeseen

    def complete(self, ctx: RequestContext) -> None:
        """Build the record's decision and enforcement parts from the context, once: what
        the policy saw and decided, the quota states, and what the response became."""
        if ctx.completed:
            return
        ctx.completed = True
        rec = ctx.record
        rec.forwarding = ctx.forwarding
        if ctx.input is not None:
            rec.input = ctx.input
            rec.revision = ctx.revision or self.gk.engine.revision
        if ctx.refused_by_gatekeeper is not None:
            status, code, message = ctx.refused_by_gatekeeper
            rec.decided_by = "gatekeeper"
            if ctx.decision is None:
                rec.result = {
                    "allow": False,
                    "status": status,
                    "reasons": [{"code": code, "message": message}],
                }
        if ctx.decision is not None:
            # Unset optional fields (null) are left out: parsing the result back restores them.
            result_of = ctx.result_of
            rec.result = (
                result_of()
                if result_of is not None
                else ctx.decision.model_dump(mode="json", exclude_none=True)
            )
        if ctx.quotas is not None:
            rec.quotas = _quota_states(ctx.quotas, ctx.settled or {})
        responder, reasoning = ctx.responder, ctx.reasoning
        if responder is not None and reasoning is not None:
            rec.status = responder.status
            rec.reasoning = reasoning.record(responder)
            # The reverse proxy reports what its upstream did under this scope key.
            upstream = ctx.scope.get(UPSTREAM_SCOPE_KEY)
            if upstream is not None:
                rec.upstream_status, rec.upstream_error = upstream

    # -- the stages, in order -------------------------------------------------------------

    async def identify(self, ctx: RequestContext) -> None:
        """The subject, by ``identity.methods`` in order (gatekeeper/identity/identify.py)."""
        try:
            ctx.subject = await self.gk.identity.identify(ctx.headers, ctx.scope.get("client"))
        except (IdentityError, AuthenticationError) as exc:
            raise Refusal(exc.status, exc.code, str(exc)) from exc
        finally:
            ctx.timer.lap("timer_gatekeeper_identify_ns")

    async def inspect(self, ctx: RequestContext) -> None:
        """A model-API request's body, read within its limits, and the dialect's facts."""
        if ctx.dialect is not None:
            limits = self.settings.request
            try:
                try:
                    async with timeout(limits.body_timeout):  # a shared loop timer
                        ctx.body = await _read_body(ctx.receive, ctx.headers, limits.max_body_bytes)
                except TimeoutError as exc:
                    raise BodyTimeoutError(
                        f"the request body did not arrive within {limits.body_timeout:g} s"
                    ) from exc
                ctx.facts, ctx.document = _inspect(ctx.dialect, ctx.body, limits.max_json_depth)
            except ClientInputError as exc:
                raise Refusal(exc.status, exc.code, str(exc)) from exc
        ctx.timer.lap("timer_gatekeeper_inspect_ns")

    async def locate(self, ctx: RequestContext) -> None:
        """The client's address behind trusted proxies, and its network facts."""
        peer = ctx.scope.get("client")
        address = self.gk.resolver.resolve(peer[0] if peer else None, ctx.headers)
        if address.spoofed or address.malformed:
            # Ignored or unreadable forwarding headers: harmless for the decision, flagged in
            # the event and counted (a spoofing client, or a misconfigured proxy chain).
            ctx.forwarding = {
                "spoofed": address.spoofed,
                "malformed": address.malformed,
                "peer": address.peer_ip,
            }
            self.gk.count("forwarding_spoofed" if address.spoofed else "forwarding_malformed")
        ctx.network = locate(address, self.gk.geo, self._jurisdiction_tags)
        ctx.timer.lap("timer_gatekeeper_locate_ns")

    async def observe_signals(self, ctx: RequestContext) -> None:
        """Distillation signals: in-process reads only (docs/distillation.md); never refuses."""
        ctx.user_agent = next(
            (v.decode("latin-1") for k, v in ctx.headers if k == b"user-agent"), None
        )
        signals = self.gk.signals
        if signals is not None:
            assert ctx.subject is not None and ctx.network is not None
            ctx.signals = await signals.inspect(
                ctx.subject,
                ctx.network,
                ctx.document,
                reasoning_requested=ctx.facts.reasoning_requested,
                estimated_tokens=ctx.facts.estimated_tokens,
                user_agent=ctx.user_agent,
                model=ctx.facts.model or None,
            )
            matched = ctx.signals.document.get("indicators")
            if matched:
                ctx.record.indicators = [
                    {"id": m["id"], "kind": m["kind"], "source": m["source"]} for m in matched
                ]
            ctx.timer.lap("timer_gatekeeper_signals_ns")

    async def decide(self, ctx: RequestContext) -> None:
        """The policy's decision on the input document built from the facts gathered."""
        scope = ctx.scope
        assert ctx.subject is not None and ctx.network is not None
        input_doc = ctx.input = build_input(
            method=scope["method"],
            path=scope["path"],
            dialect=ctx.dialect.name if ctx.dialect else None,
            facts=ctx.facts,
            subject=ctx.subject,
            network=ctx.network,
            unix_ns=ctx.record.unix_ns,
            user_agent=ctx.user_agent,
            signals=ctx.signals.document if ctx.signals is not None else None,
        )
        try:
            verdict = await self.gk.engine.verdict(input_doc)
        except PolicyError as exc:
            self.gk.count("policy_errors")
            raise Refusal(exc.status, exc.code, str(exc)) from exc
        ctx.timer.lap("timer_rego_query_eval_ns")
        decision = ctx.decision = verdict.decision
        ctx.result_of = verdict.result
        ctx.revision = verdict.revision  # the revision that decided, even across a hot reload
        if self.gk.signals is not None and ctx.signals is not None:
            self.gk.signals.observe(ctx.signals, decision)  # counted whatever happens next
        # A shadow refusal is logged, not enforced: the request continues as if allowed, held
        # to the quotas the decision carries (the default pack gives it the allowed quotas).
        if not decision.allow and not decision.shadow:
            primary = decision.reasons[0]
            raise Refusal(decision.status, primary.code, primary.message, decided_by_policy=True)

    async def enforce_quotas(self, ctx: RequestContext) -> None:
        """The decision's quotas, debited atomically; the reasoning budget they leave."""
        decision = ctx.decision
        assert decision is not None and ctx.subject is not None
        # Reasoning budget, continuity and shaper (gatekeeper/reasoning/enforcement.py).
        reasoning = ctx.reasoning = ReasoningEnforcement(
            self._reasoning, ctx.dialect, ctx.subject.id, decision.reasoning
        )
        quota_specs = reasoning.quotas(decision.quotas)
        acquired: QuotaResult | None = None
        if decision.quotas:
            try:
                result = acquired = ctx.quotas = await self.gk.quotas.acquire(quota_specs)
            except QuotaStoreError as exc:
                raise Refusal(exc.status, exc.code, str(exc)) from exc
            ctx.timer.lap("timer_gatekeeper_quota_ns")
            ctx.quota_headers = rate_limit_headers(result)
            if not result.allowed:
                refused = result.refused
                assert refused is not None
                message = f"quota {refused.name!r} exceeded; retry in {result.retry_after} s"
                raise Refusal(429, "quota_exceeded", message, decided_by_policy=True)
            # Token quotas paid the estimate; the response's real usage settles them below.
            ctx.reservation = TokenReservation.open(
                self.gk.quotas, quota_specs, result, prompt_chars=ctx.facts.prompt_features.chars
            )
        reasoning.apply_budget(acquired, decision.quotas)

    async def call_app(self, ctx: RequestContext) -> None:
        """The app, its response shaped and the headers added; then ``settle``: what
        enforcement did, for the event (at the end, or just before a durable commit)."""
        rec, scope, send = ctx.record, ctx.scope, ctx.send
        decision, reasoning = ctx.decision, ctx.reasoning
        assert decision is not None and reasoning is not None
        extra = [(DECISION_ID_HEADER, rec.decision_id.encode()), *ctx.quota_headers]
        extra.extend((k.lower().encode(), v.encode()) for k, v in decision.headers.items())
        # Every model request is shaped, "full" too: no byte changes, but the usage is read.
        shaper = reasoning.new_shaper()
        body = await reasoning.restore(scope, ctx.body)
        clock = ShapingClock(send) if shaper is not None else None
        downstream = clock.downstream if clock is not None else send
        reservation = ctx.reservation
        responder = ctx.responder = Responder(
            reservation.meter(downstream) if reservation is not None else downstream,
            shaper=shaper,
            extra_headers=extra,
            max_event_bytes=self.settings.request.max_event_bytes,
            before_end=reasoning.save,
        )
        app_send = clock.around(responder) if clock is not None else responder
        settled = False

        async def settle() -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            stats = responder.stats
            ctx.timer.lap("timer_gatekeeper_app_ns")
            if clock is not None:
                rec.metrics["timer_gatekeeper_shape_ns"] = clock.shaping_ns
            if reservation is not None:
                ctx.settled = await reservation.settle(stats)
            if self.gk.signals is not None and ctx.signals is not None:
                self.gk.signals.settle(ctx.signals, stats, responder.status)
            self.complete(ctx)

        if isinstance(send, DurableResponse):
            send.before_commit = settle
        receive = _replay(body, ctx.receive) if ctx.dialect else ctx.receive
        try:
            await self.app(scope, receive, app_send)
        except Exception as exc:
            await settle()
            self._app_failed(exc, rec)
            if responder.started:
                raise  # mid-response: only the server can end it (it closes the connection)
            # Nothing reached the client yet: answer as the API would, with the decision id.
            message = "the model API failed to answer this request"
            await send_error(send, ctx.dialect, rec, 500, "app_error", message, [])
        finally:
            await settle()

    # -- refusals ---------------------------------------------------------------------------

    async def refuse(self, ctx: RequestContext, refusal: Refusal) -> None:
        """Answer a stage's refusal in the dialect's error format (see ``Refusal``)."""
        status, code, message = refusal.status, refusal.code, refusal.message
        headers = list(ctx.quota_headers) + refusal.headers
        if refusal.decided_by_policy:
            decision = ctx.decision
            assert decision is not None
            headers.extend((k.lower().encode(), v.encode()) for k, v in decision.headers.items())
            if decision.obligations.step_up_kyc is not None:
                headers.append(
                    (b"x-gatekeeper-required-kyc", decision.obligations.step_up_kyc.encode())
                )
        else:
            message = public_message(ctx.record, code, message)
            ctx.refused_by_gatekeeper = (status, code, message)
        self.complete(ctx)
        await send_error(ctx.send, ctx.dialect, ctx.record, status, code, message, headers)

    def _app_failed(self, exc: Exception, rec: DecisionRecord) -> None:
        """The app (or upstream) raised: log it with the decision id, record it in the event."""
        self.gk.count("app_errors")
        log.error("the app raised on decision %s", rec.decision_id, exc_info=exc)
        rec.error = {"code": "app_error", "message": type(exc).__name__}


def request_dialect(scope: Scope) -> Dialect | None:
    """The dialect of a model-API request (a POST to one of its paths); None for the rest."""
    return dialect_for_path(scope["path"]) if scope["method"] == "POST" else None


async def refuse_unenforced(
    send: Send,
    dialect: Dialect | None,
    rec: DecisionRecord,
    error: GatekeeperError,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Refuse with ``error``'s status and code before (or without) a valid policy decision:
    gatekeeper decides, fail closed.

    The error's text may name addresses, URLs or paths: for a failure of gatekeeper's own
    parts (``CLIENT_MESSAGES``) the client gets a fixed message, and the detail goes to the
    log and, credentials masked, to the record's ``error``."""
    rec.decided_by = "gatekeeper"
    status, code = error.status, error.code
    message = public_message(rec, code, str(error))
    if rec.result is None:
        rec.result = {
            "allow": False,
            "status": status,
            "reasons": [{"code": code, "message": message}],
        }
    await send_error(send, dialect, rec, status, code, message, headers)


async def send_error(
    send: Send,
    dialect: Dialect | None,
    rec: DecisionRecord,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """An error response in ``dialect``'s format (OpenAI chat's without one), with the
    decision id; sets the record's status."""
    rec.status = status
    decision_id = (DECISION_ID_HEADER, rec.decision_id.encode())
    await send_error_response(send, dialect, status, code, message, [decision_id, *headers])


def public_message(rec: DecisionRecord, code: str, message: str) -> str:
    """What the client is told of a refusal gatekeeper decided: for a failure of its own
    parts (``CLIENT_MESSAGES``) a fixed message, the detail going to the log and the record."""
    if code not in CLIENT_MESSAGES:
        return message
    log_internal(rec, code, message)
    return client_message(code, message)


def log_internal(rec: DecisionRecord, code: str, detail: str) -> None:
    """The detail of a refusal caused by one of gatekeeper's own parts: logged with the
    decision id, and kept (credentials masked) in the decision-log record's ``error``."""
    masked = redact(detail)
    rec.error = {"code": code, "message": masked}
    log.warning("request %s refused (%s): %s", rec.decision_id, code, masked)


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


def _quota_states(
    result: QuotaResult, settled: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """The event's ``enforcement.quotas``: each quota's state after this request, with what
    the token reservation settled (``reserved``, ``used``, ``measured_by``)."""
    return [
        {
            "name": s.name,
            "key": s.key,
            "capacity": s.capacity,
            "remaining": round(s.remaining, 3),
            "refused": result.refused is not None and result.refused.key == s.key,
            **({"source": s.source} if s.source != "store" else {}),
            **settled.get((s.name, s.key), {}),
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
