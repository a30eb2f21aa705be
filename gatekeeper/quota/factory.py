"""Quota storage chosen by URI, following `limits`' conventions.

=================================================  ===============================================
``memory://``                                       in-process (one process; the default)
``redis://[[user]:password@]host:port[/db]``        one Redis
``rediss://…``                                      one Redis over TLS
``redis+unix:///path/to/socket[?db=0]``             one Redis on a Unix socket
``redis+cluster://[[user]:password@]h:p[,h:p…]``    Redis Cluster (any nodes; the rest is found)
``redis+sentinel://[[user]:password@]h:p[,h:p…]/service``
                                                    the primary of ``service`` behind Sentinel
=================================================  ===============================================

An ``async+`` prefix (``async+redis://``, as `limits`' async storages spell it) is accepted too.
Redis stores are wrapped in ``FailoverQuotaStore`` (timeouts and ``on_store_error``).
"""

from __future__ import annotations

import urllib.parse

from gatekeeper.errors import ConfigurationError
from gatekeeper.quota.base import QuotaStore
from gatekeeper.quota.failover import FailoverQuotaStore
from gatekeeper.quota.memory import MemoryQuotaStore
from gatekeeper.quota.redis_store import RedisQuotaStore
from gatekeeper.redis_client import MAX_CONNECTIONS, POOL_TIMEOUT, redact, redis_client

__all__ = ["SCHEMES", "open_quota_store", "redact", "redis_client"]

SCHEMES = ("memory", "redis", "rediss", "redis+unix", "redis+cluster", "redis+sentinel")


def open_quota_store(
    uri: str,
    *,
    prefix: str = "gk",
    timeout: float = 0.1,
    local_fraction: float = 0.25,
    retry_interval: float = 1.0,
    failure_threshold: int = 3,
    settle_interval: float = 0.0,
    settle_batch: int = 256,
    max_connections: int = MAX_CONNECTIONS,
    pool_timeout: float = POOL_TIMEOUT,
) -> QuotaStore:
    """The quota store named by ``uri``; raises ``ConfigurationError`` for a bad one.

    Nothing connects here: the first request (or /healthz) does, so a Redis that is down at
    start-up is an outage handled by ``on_store_error``, not a crash.
    ``settle_interval`` > 0 defers a Redis store's settlements (``quota.settle_interval``; 0,
    the default here, writes each at once); ``settle_batch`` pending corrections are sent
    without waiting for the interval. Deferred writes get the same ``timeout`` as a check.
    ``max_connections`` and ``pool_timeout`` bound the client's pool (``redis_client``).
    """
    uri = uri.strip().removeprefix("async+")
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in SCHEMES:
        raise ConfigurationError(
            f"unsupported quota storage {redact(uri)!r} (supported: "
            + ", ".join(f"{s}://" for s in SCHEMES)
            + ")"
        )
    if parsed.scheme == "memory":
        return MemoryQuotaStore()
    try:
        bound = max(1.0, timeout * 20)
        # Every send is bounded by the store's wire timeout (and every call, as a last resort,
        # by the failover layer's cap): a socket-level read timeout on top would cost two
        # extra tasks per command.
        client = redis_client(
            uri,
            socket_timeout=bound,
            read_timeout=False,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
        )
        store = RedisQuotaStore(
            client,
            prefix=prefix,
            description=redact(uri),
            timeout=timeout,
            settle_interval=settle_interval,
            settle_batch=settle_batch,
        )
        return FailoverQuotaStore(
            store,
            timeout=timeout,
            local_fraction=local_fraction,
            retry_interval=retry_interval,
            failure_threshold=failure_threshold,
            description=redact(uri),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"quota storage {redact(uri)!r}: {exc}") from exc
