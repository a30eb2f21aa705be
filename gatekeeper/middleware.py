"""``GatekeeperMiddleware``: the pure-ASGI middleware that runs the request pipeline.

identify → locate → inspect → policy → quotas → app → shape → log. Everything before the policy
gathers facts into one ``Input``; the policy decides; everything after only enforces the
decision. Every response carries ``x-gatekeeper-decision-id`` and produces exactly one
decision-log event with that id, whatever the outcome.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatekeeper.audit import DecisionRecord, new_decision_id
from gatekeeper.contract import Decision, Input, Network, Reason, RequestInfo, TimeInfo
from gatekeeper.dialects import Dialect, RequestBodyError, dialect_for_path
from gatekeeper.dialects.base import RequestFacts
from gatekeeper.errors import (
    BodyTooLargeError,
    ClientInputError,
    IdentityError,
    MalformedBodyError,
    PolicyError,
    QuotaStoreError,
)
from gatekeeper.identity import api_key_from_headers
from gatekeeper.network import locate
from gatekeeper.quota import QuotaResult, rate_limit_headers
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings
from gatekeeper.shaping import Responder

log = logging.getLogger("gatekeeper")

DECISION_ID_HEADER = b"x-gatekeeper-decision-id"


class GatekeeperMiddleware:
    """Protects an ASGI app: ``app.add_middleware(GatekeeperMiddleware, settings=...)``.

    Pass ``settings`` (a ``Settings``), or nothing to read them from the environment and
    ``GATEKEEPER_CONFIG``; or pass a ready ``gatekeeper`` (a ``Gatekeeper``) to share one
    instance between apps.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        gatekeeper: Gatekeeper | None = None,
    ) -> None:
        self.app = app
        self.gk = gatekeeper or Gatekeeper.from_settings(settings or Settings.load())
        self.settings = self.gk.settings
        self._unprotected = frozenset(self.settings.request.unprotected_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
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
        try:
            await self._handle(scope, receive, send, record)
        finally:
            self.gk.decision_log.record(record.to_event(self.settings.audit.labels))

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.gk.aclose()
            await send(message)

        return wrapped

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, rec: DecisionRecord
    ) -> None:
        dialect = dialect_for_path(scope["path"]) if scope["method"] == "POST" else None
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        timer = _Timer(rec.metrics)

        # identify
        api_key = api_key_from_headers(headers)
        try:
            subject = await self.gk.subjects.lookup(api_key) if api_key else None
        except IdentityError as exc:
            await self._refuse_unenforced(send, dialect, rec, exc.status, exc.code, str(exc))
            return
        timer.lap("timer_gatekeeper_identify_ns")
        if subject is None:
            message = "missing API key" if not api_key else "invalid API key"
            code = "missing_api_key" if not api_key else "invalid_api_key"
            await self._refuse_unenforced(send, dialect, rec, 401, code, message)
            return

        # inspect
        body = b""
        facts = RequestFacts()
        if dialect is not None:
            try:
                body = await _read_body(receive, headers, self.settings.request.max_body_bytes)
                facts = _inspect(dialect, body)
            except ClientInputError as exc:
                await self._refuse_unenforced(send, dialect, rec, exc.status, exc.code, str(exc))
                return
        timer.lap("timer_gatekeeper_inspect_ns")

        # locate
        peer = scope.get("client")
        address = self.gk.resolver.resolve(peer[0] if peer else None, headers)
        network: Network = locate(address, self.gk.geo)
        timer.lap("timer_gatekeeper_locate_ns")

        input_doc = _build_input(scope, headers, dialect, facts, subject, network, rec.unix_ns)
        rec.input = input_doc
        rec.revision = self.gk.engine.revision

        # policy
        try:
            decision = await self.gk.engine.decide(input_doc)
        except PolicyError as exc:
            self.gk.count("policy_errors")
            log.warning("policy error, request refused: %s", exc)
            rec.error = {"code": exc.code, "message": str(exc)}
            await self._refuse_unenforced(send, dialect, rec, exc.status, exc.code, str(exc))
            return
        timer.lap("timer_rego_query_eval_ns")
        rec.result = decision.model_dump(mode="json")
        # A shadow refusal is logged, not enforced: the request continues, without quotas.
        if not decision.allow and not decision.shadow:
            await self._refuse(send, dialect, rec, decision, decision.status, decision.reasons)
            return

        # quotas
        quota_headers: list[tuple[bytes, bytes]] = []
        if decision.allow and decision.quotas:
            try:
                result = await self.gk.quotas.acquire(decision.quotas)
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

        # app, with the response shaped and the headers added
        extra = [(DECISION_ID_HEADER, rec.decision_id.encode()), *quota_headers]
        extra.extend((k.lower().encode(), v.encode()) for k, v in decision.headers.items())
        mode = decision.reasoning.mode
        shaper = None
        if dialect is not None and mode != "full":
            shaper = dialect.new_shaper(decision.reasoning)
        responder = Responder(
            send,
            shaper=shaper,
            extra_headers=extra,
            max_event_bytes=self.settings.request.max_event_bytes,
        )
        try:
            await self.app(scope, _replay(body, receive) if dialect else receive, responder)
        finally:
            rec.status = responder.status
            stats = responder.stats
            rec.reasoning = {
                "mode": mode,
                "seen_tokens": stats.seen_tokens if stats else None,
                "exposed_tokens": stats.exposed_tokens if stats else None,
                "removed_tokens": stats.removed_tokens if stats else 0,
                "removed_items": stats.removed_items if stats else 0,
                "aborted": responder.aborted,
            }
            timer.lap("timer_gatekeeper_app_ns")

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
        """Refuse before (or without) a valid policy decision: gatekeeper decides, fail closed."""
        rec.decided_by = "gatekeeper"
        if rec.result is None:
            rec.result = {
                "allow": False,
                "status": status,
                "reasons": [{"code": code, "message": message}],
            }
        await _send_error(send, dialect, rec, status, code, message, [])


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


def _inspect(dialect: Dialect, body: bytes) -> RequestFacts:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"request body is not valid JSON: {exc}") from exc
    try:
        return dialect.read_request(document)
    except RequestBodyError as exc:
        raise MalformedBodyError(str(exc)) from exc


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


def _build_input(
    scope: Scope,
    headers: list[tuple[bytes, bytes]],
    dialect: Dialect | None,
    facts: RequestFacts,
    subject: Any,
    network: Network,
    unix_ns: int,
) -> dict[str, Any]:
    user_agent = next((v.decode("latin-1") for k, v in headers if k == b"user-agent"), None)
    now = datetime.fromtimestamp(unix_ns / 1e9, UTC)
    doc = Input(
        subject=subject,
        network=network,
        request=RequestInfo(
            method=scope["method"],
            path=scope["path"],
            dialect=dialect.name if dialect else None,
            model=facts.model,
            stream=facts.stream,
            reasoning_requested=facts.reasoning_requested,
            max_tokens=facts.max_tokens,
            estimated_tokens=facts.estimated_tokens,
            user_agent=user_agent,
            prompt_features=facts.prompt_features,
        ),
        time=TimeInfo(
            unix_ns=unix_ns,
            rfc3339=now.isoformat().replace("+00:00", "Z"),
            weekday=now.weekday(),
            hour_utc=now.hour,
        ),
    )
    return doc.model_dump(mode="json")


def _quota_states(result: QuotaResult) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "key": s.key,
            "capacity": s.capacity,
            "remaining": round(s.remaining, 3),
            "refused": result.refused is not None and result.refused.key == s.key,
        }
        for s in result.states
    ]


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


__all__ = ["DECISION_ID_HEADER", "GatekeeperMiddleware"]
