"""``opa-python-client``'s async client, with the two things gatekeeper needs that it lacks.

``AsyncOpaClient`` always builds aiohttp's default connector (100 connections, no way to size
it), and its ``query_rule`` raises on a non-2xx status before reading the body, which holds
OPA's reason (e.g. a conflict between rule values). ``PooledOpaClient`` overrides the session
set-up to size the keep-alive pool, and adds ``query_decision``, built on the client's own
request helper (its session, headers, token and TLS settings). Everything else (uploading
policies and data, health) is the client's own API, unchanged.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import orjson
from opa_client import AsyncOpaClient


class PooledOpaClient(AsyncOpaClient):  # type: ignore[misc]
    """``AsyncOpaClient`` with a sized keep-alive pool and a query that keeps error bodies."""

    def __init__(self, *, pool_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_size = pool_size

    async def _init_session(self) -> None:
        context: ssl.SSLContext | None = None
        if self.ssl:
            context = ssl.create_default_context()
            if self.cert:
                cert = self.cert if isinstance(self.cert, tuple) else (self.cert,)
                context.load_cert_chain(*cert)
        self._connector = aiohttp.TCPConnector(
            ssl=context if context is not None else False,
            limit=self.pool_size,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            headers=self.headers,
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )

    async def query_decision(
        self, path: str, input_json: bytes, *, provenance: bool, seconds: float
    ) -> tuple[int, dict[str, Any]]:
        """``POST /v1/data/<path>``: the HTTP status and the JSON body, whatever the status."""
        url = f"{self.root_url}/data/{path}" + ("?provenance=true" if provenance else "")
        headers = {"Content-Type": "application/json"}
        async with self._request(
            "POST",
            url,
            data=b'{"input":' + input_json + b"}",
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            raw = await response.read()
            status: int = response.status
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {"message": raw[:200].decode(errors="replace")}
        return status, body if isinstance(body, dict) else {"result": body}
