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
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from gatekeeper.errors import ConfigurationError
from gatekeeper.quota.base import QuotaStore
from gatekeeper.quota.failover import FailoverQuotaStore
from gatekeeper.quota.memory import MemoryQuotaStore
from gatekeeper.quota.redis_store import RedisClient, RedisQuotaStore

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
) -> QuotaStore:
    """The quota store named by ``uri``; raises ``ConfigurationError`` for a bad one.

    Nothing connects here: the first request (or /healthz) does, so a Redis that is down at
    start-up is an outage handled by ``on_store_error``, not a crash.
    ``settle_interval`` > 0 defers a Redis store's settlements (``quota.settle_interval``; 0,
    the default here, writes each at once); ``settle_batch`` pending corrections are sent
    without waiting for the interval. Deferred writes get the same ``timeout`` as a check.
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
        client = redis_client(uri, socket_timeout=bound, read_timeout=False)
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


def redis_client(
    uri: str, *, socket_timeout: float = 1.0, read_timeout: bool = True
) -> RedisClient:
    """An asyncio Redis client for a ``redis``-family URI (see the module docstring).

    Commands are never retried by the client: a script that ran but whose reply was lost must
    not debit twice. Failures go to the caller, whose ``on_store_error`` decides.
    ``socket_timeout`` bounds connecting and, unless ``read_timeout`` is false (the caller
    bounds every command itself), each command; a cluster client always keeps both.
    """
    uri = uri.removeprefix("async+")
    parsed = urllib.parse.urlparse(uri)
    per_command = socket_timeout if read_timeout or parsed.scheme == "redis+cluster" else None
    options: dict[str, Any] = {
        "socket_timeout": per_command,
        "socket_connect_timeout": socket_timeout,
    }
    auth: dict[str, Any] = {}
    if parsed.username:
        auth["username"] = urllib.parse.unquote(parsed.username)
    if parsed.password:
        auth["password"] = urllib.parse.unquote(parsed.password)
    if parsed.scheme == "redis+cluster":
        nodes = [ClusterNode(host, port) for host, port in _locations(parsed)]
        return RedisCluster(startup_nodes=nodes, **auth, **options)
    if parsed.scheme == "redis+sentinel":
        query = urllib.parse.parse_qs(parsed.query)
        service = parsed.path.strip("/") or (query.get("service_name") or [""])[0]
        if not service:
            raise ValueError("redis+sentinel:// needs a service name: …/service_name")
        sentinel = Sentinel(
            _locations(parsed),
            sentinel_kwargs={**auth, **options},
            retry=Retry(NoBackoff(), 0),
            db=int((query.get("db") or ["0"])[0]),
            **auth,
            **options,
        )
        primary: Redis = sentinel.master_for(service)
        return primary
    if parsed.scheme == "redis+unix":
        uri = "unix" + uri[len("redis+unix") :]
    return Redis.from_url(
        uri,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=per_command,
        socket_connect_timeout=socket_timeout,
    )


def _locations(parsed: urllib.parse.ParseResult) -> list[tuple[str, int]]:
    hosts = parsed.netloc.rpartition("@")[2]
    found = []
    for item in hosts.split(","):
        location = urllib.parse.urlparse(f"//{item.strip()}")
        if location.hostname is None or location.port is None:
            raise ValueError(f"missing host or port in {item!r}")
        found.append((location.hostname, location.port))
    if not found:
        raise ValueError("no host:port given")
    return found


def redact(uri: str) -> str:
    """``uri`` without its password, for logs and /healthz."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.password is None:
        return uri
    hosts = parsed.netloc.rpartition("@")[2]
    user = parsed.username or ""
    return parsed._replace(netloc=f"{user}:***@{hosts}").geturl()
