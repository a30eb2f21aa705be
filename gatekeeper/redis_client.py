"""The Redis client every part that keeps state in Redis shares: quotas, signals, continuity.

One function turns a ``redis``-family URI (``limits``' conventions; the table is in
``gatekeeper.quota.factory``) into an asyncio client: one Redis, TLS, a Unix socket, a Cluster,
or the primary behind Sentinel. ``redact`` takes a URI's password out for logs and health.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

RedisClient = Redis | RedisCluster


def redis_client(
    uri: str, *, socket_timeout: float = 1.0, read_timeout: bool = True
) -> RedisClient:
    """An asyncio Redis client for a ``redis``-family URI (``gatekeeper.quota.factory``).

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
