"""``ProxyApp``: the ASGI app that forwards every request to one upstream.

It is meant to run behind ``GatekeeperMiddleware`` (``create_proxy_app`` builds both): the
middleware decides and shapes, this app only moves bytes. One pooled ``httpx.AsyncClient``
carries every request. Bodies stream both ways: the request body is sent upstream as the client
sends it (or, on model-API paths, as the middleware replays it after reading it), and the
response is sent back chunk by chunk as it arrives, never buffered whole here.

Failures map to the dialect's own error format (so official SDKs raise their usual errors):
the upstream refusing the connection or breaking the exchange → 502, any timeout → 504. When
the client goes away, the upstream request is cancelled and its connection closed. What happened
upstream is reported to the middleware under ``UPSTREAM_SCOPE_KEY`` for the decision log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import quote_from_bytes

import anyio
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatekeeper.dialects import DEFAULT_DIALECT, dialect_for_path, send_error_response
from gatekeeper.errors import ConfigurationError
from gatekeeper.middleware import DECISION_ID_SCOPE_KEY, UPSTREAM_SCOPE_KEY, GatekeeperMiddleware
from gatekeeper.network import ClientAddressResolver
from gatekeeper.network.address import parse_ip
from gatekeeper.observability.logs import redact
from gatekeeper.proxy.headers import (
    Hop,
    add_forwarding,
    replace_credentials,
    shapeable_accept_encoding,
    strip_hop_by_hop,
)
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings

log = logging.getLogger("gatekeeper.proxy")

VIA = b"1.1 gatekeeper"
_PATH_SAFE = "/:@!$&'()*+,;=-._~%?"


class _ClientGone(Exception):
    """The client disconnected while its request body was being sent upstream."""


class _Exchange:
    """The state of one forwarded request, shared with the disconnect watcher."""

    __slots__ = ("body_done", "broke_off", "client_gone", "finished")

    def __init__(self) -> None:
        self.body_done = anyio.Event()
        #: Set just before the last message of the response is sent.
        self.finished = False
        self.client_gone = False
        #: Why a non-SSE response body was cut short (raised once the exchange is over).
        self.broke_off: str | None = None


class ProxyApp:
    """Forwards requests to ``settings.proxy.upstream``.

    Args:
        settings: the gatekeeper settings (``proxy`` section, and ``network.trusted_proxies``
            to decide whether forwarding headers from the peer are kept).
        transport: an ``httpx`` transport to use instead of the network (embedding, tests).
    """

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        proxy = settings.proxy
        if not proxy.upstream:
            raise ConfigurationError("proxy.upstream is not set (gatekeeper proxy --upstream URL)")
        self.settings = proxy
        self.upstream = httpx.URL(proxy.upstream)
        self._prefix = self.upstream.raw_path.split(b"?")[0].rstrip(b"/")
        self._resolver = ClientAddressResolver(settings.network.trusted_proxies)
        self._api_key = (
            proxy.upstream_api_key.get_secret_value() if proxy.upstream_api_key else None
        )
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client (created on first use, in the serving event loop)."""
        if self._client is None:
            p = self.settings
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    connect=p.connect_timeout,
                    read=p.read_timeout,
                    write=p.write_timeout,
                    pool=p.pool_timeout,
                ),
                limits=httpx.Limits(
                    max_connections=p.max_connections,
                    max_keepalive_connections=p.max_keepalive_connections,
                    keepalive_expiry=p.keepalive_expiry,
                ),
                follow_redirects=False,
                # No proxy variables or .netrc from the environment: only what the client sent.
                trust_env=False,
                transport=self._transport,
            )
            self._client.headers.clear()  # no User-Agent/Accept/Accept-Encoding of httpx's own
        return self._client

    async def aclose(self) -> None:
        """Close the upstream connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)
        elif scope["type"] == "websocket":
            # Never forwarded: the middleware does not inspect WebSockets, so none is let through.
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- forwarding ------------------------------------------------------------------------

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange()
        first = await receive()
        if first["type"] == "http.disconnect":
            scope[UPSTREAM_SCOPE_KEY] = (None, "client_disconnected")
            return
        body: bytes = first.get("body", b"")
        content: bytes | AsyncIterator[bytes] | None
        if first.get("more_body", False):
            content = self._stream_body(body, receive, exchange)
        else:
            exchange.body_done.set()
            content = body or None
        request = self.client.build_request(
            scope["method"], self._url(scope), headers=self._request_headers(scope), content=content
        )
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_watch_disconnect, receive, exchange, tasks.cancel_scope)
            try:
                await self._exchange(scope, request, send, exchange)
            finally:
                exchange.finished = True
                tasks.cancel_scope.cancel()
        if exchange.client_gone:
            status, _ = scope.get(UPSTREAM_SCOPE_KEY, (None, None))
            scope[UPSTREAM_SCOPE_KEY] = (status, "client_disconnected")
            log.info("client disconnected; upstream request cancelled")
        elif exchange.broke_off is not None:
            # Raised outside the task group, so the server sees this error, not a group of one.
            raise UpstreamBrokeOff(exchange.broke_off)

    async def _exchange(
        self, scope: Scope, request: httpx.Request, send: Send, exchange: _Exchange
    ) -> None:
        failure: tuple[int, str, str, Exception] | None = None
        try:
            response = await self.client.send(request, stream=True)
        except _ClientGone:
            exchange.client_gone = True
            return
        except httpx.TimeoutException as exc:
            failure = (504, "upstream_timeout", "the upstream timed out", exc)
        except httpx.ConnectError as exc:
            failure = (502, "upstream_unreachable", "the upstream could not be reached", exc)
        except httpx.TransportError as exc:
            failure = (502, "upstream_protocol_error", "the upstream failed to answer", exc)
        if failure is not None:
            exchange.finished = True
            await self._fail(scope, send, *failure)
            return
        scope[UPSTREAM_SCOPE_KEY] = (response.status_code, None)
        try:
            await self._relay(scope, response, send, exchange)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    async def _relay(
        self, scope: Scope, response: httpx.Response, send: Send, exchange: _Exchange
    ) -> None:
        headers = strip_hop_by_hop(response.headers.raw)
        _append_via(headers)
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        try:
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.TransportError as exc:
            code = (
                "upstream_timeout"
                if isinstance(exc, httpx.TimeoutException)
                else "upstream_protocol_error"
            )
            scope[UPSTREAM_SCOPE_KEY] = (response.status_code, code)
            log.warning("upstream broke off its response: %s", type(exc).__name__)
            if not _is_event_stream(headers):
                # No way to say so in a body already under way: drop the connection, so the
                # client sees a failure rather than a silently truncated response.
                exchange.broke_off = code
                return
            await send(
                {
                    "type": "http.response.body",
                    "body": _stream_error(scope, code),
                    "more_body": True,
                }
            )
        exchange.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _fail(
        self, scope: Scope, send: Send, status: int, code: str, message: str, exc: Exception
    ) -> None:
        scope[UPSTREAM_SCOPE_KEY] = (None, code)
        # The client reads the fixed message only; the detail (which names the upstream's
        # address) is for the operator, with the decision id the client was given.
        log.warning(
            "request %s: %s (%s) for %s %s: %s",
            scope.get(DECISION_ID_SCOPE_KEY, "-"),
            message,
            type(exc).__name__,
            scope["method"],
            scope["path"],
            redact(str(exc)),
        )
        await send_error_response(send, dialect_for_path(scope["path"]), status, code, message)

    async def _stream_body(
        self, first: bytes, receive: Receive, exchange: _Exchange
    ) -> AsyncIterator[bytes]:
        if first:
            yield first
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                break
        exchange.body_done.set()

    # -- request line and headers ----------------------------------------------------------

    def _url(self, scope: Scope) -> httpx.URL:
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = quote_from_bytes(raw.split(b"?")[0], safe=_PATH_SAFE).encode("ascii")
        query: bytes = scope.get("query_string", b"")
        if query:
            path += b"?" + quote_from_bytes(query, safe=_PATH_SAFE + "=&").encode("ascii")
        return self.upstream.copy_with(raw_path=self._prefix + path)

    def _request_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        original: list[tuple[bytes, bytes]] = scope["headers"]
        also = () if self.settings.preserve_host else (b"host",)
        headers = strip_hop_by_hop(original, *also)
        for index, (name, value) in enumerate(headers):
            if name == b"accept-encoding":
                headers[index] = (name, shapeable_accept_encoding(value))
        client = scope.get("client")
        peer = client[0] if client else None
        address = parse_ip(peer) if peer else None
        hop = Hop(
            peer=str(address) if address is not None else peer,
            scheme=scope.get("scheme", "http"),
            host=next((v for k, v in original if k == b"host"), None),
            peer_trusted=address is not None and self._resolver.is_trusted(address),
        )
        add_forwarding(headers, hop, self.settings.forwarded_headers)
        _append_via(headers)
        if self._api_key is not None:
            replace_credentials(headers, self._api_key)
        return headers


class UpstreamBrokeOff(Exception):
    """The upstream failed in the middle of a (non-SSE) response body; the connection is cut."""

    def __init__(self, code: str) -> None:
        super().__init__(f"upstream response body interrupted ({code})")
        self.code = code


async def _watch_disconnect(
    receive: Receive, exchange: _Exchange, scope: anyio.CancelScope
) -> None:
    """Cancel the exchange when the client goes away (after its body has been read)."""
    await exchange.body_done.wait()
    message: Message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
    if not exchange.finished:
        exchange.client_gone = True
        scope.cancel()


def _append_via(headers: list[tuple[bytes, bytes]]) -> None:
    existing = [v for k, v in headers if k == b"via"]
    if existing:
        headers[:] = [(k, v) for k, v in headers if k != b"via"]
    headers.append((b"via", b", ".join([*existing, VIA])))


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    media = next((v for k, v in headers if k == b"content-type"), b"")
    return media.split(b";")[0].strip().lower() == b"text/event-stream"


def _stream_error(scope: Scope, code: str) -> bytes:
    """The dialect's mid-stream error frame, so SDK clients raise rather than stop quietly."""
    from gatekeeper.contract import ReasoningPolicy
    from gatekeeper.reasoning.sse import encode_event

    dialect = dialect_for_path(scope["path"]) or DEFAULT_DIALECT
    shaper = dialect.new_shaper(ReasoningPolicy(mode="full"))
    message = "the upstream broke off the stream"
    return b"".join(encode_event(e) for e in shaper.abort_events(code, message))


def create_proxy_app(
    settings: Settings,
    *,
    gatekeeper: Gatekeeper | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ASGIApp:
    """``ProxyApp`` for ``settings.proxy.upstream`` behind ``GatekeeperMiddleware``."""
    proxy = ProxyApp(settings, transport=transport)
    gk = gatekeeper or Gatekeeper.from_settings(settings)
    return GatekeeperMiddleware(proxy, gatekeeper=gk)


__all__ = ["ProxyApp", "UpstreamBrokeOff", "create_proxy_app"]
