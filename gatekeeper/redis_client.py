"""The Redis client every part that keeps state in Redis shares: quotas, signals, continuity.

One function turns a ``redis``-family URI (``limits``' conventions; the table is in
``gatekeeper.quota.factory``) into an asyncio client: one Redis, TLS, a Unix socket, a Cluster,
or the primary behind Sentinel. ``redact`` takes a URI's password out for logs and health.

Connections come from a bounded pool (``WaitingConnectionPool``, redis-py's
``BlockingConnectionPool``): past ``max_connections`` commands in flight, a command waits up to
``pool_timeout`` seconds for a connection to come back instead of failing at once with
``MaxConnectionsError``; if none does, it fails with ``PoolTimeout`` (a ``ConnectionError``), which
each caller handles as it handles a store that cannot be reached.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.observability import recorder as _recorder
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

RedisClient = Redis | RedisCluster

#: What ``recorder`` holds before it looked for a metrics collector.
_UNKNOWN = object()

#: redis-py's own pool size, and the default of ``quota.max_connections``.
MAX_CONNECTIONS = 100
#: Seconds a command waits for a free connection (``quota.pool_timeout``).
POOL_TIMEOUT = 1.0


class PoolTimeout(RedisConnectionError):
    """Every connection of the pool stayed busy for ``pool_timeout`` seconds."""


class WaitingConnectionPool(BlockingConnectionPool):
    """redis-py's ``BlockingConnectionPool``, without its cost while nobody has to wait.

    ``BlockingConnectionPool`` takes an ``asyncio.Condition`` and arms a timeout on every
    checkout and return (about 10 µs more than ``ConnectionPool`` per command, measured). Here a
    checkout that finds a connection free while no one is queued is ``ConnectionPool``'s, and a
    return wakes a waiter only when one is queued; a checkout that must wait (or arrives behind
    one that does, so none is overtaken) is ``BlockingConnectionPool``'s, whose timeout raises
    ``PoolTimeout`` here.

    Lean checkout and return: while redis-py records no connection metrics (no OpenTelemetry
    collector configured) and no credential provider may re-authenticate a returned
    connection, taking an idle connection and giving it back is what ``ConnectionPool`` does
    without its no-op metric records, its release event and its lock (there is no await
    between taking a connection and marking it in use). The connection is still checked
    (``ensure_connection``: connected, nothing unread), and anything else (a connection to
    make, one marked for reconnection, the pool's lock held) takes redis-py's own path;
    so does a connection that is not clean (``ensure_connection`` reconnects it).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = 0
        # Only this class, not a subclass with its own rules (Sentinel's pool).
        self._may_be_lean = (
            type(self) is WaitingConnectionPool
            and self.connection_kwargs.get("credential_provider") is None
        )

    def _lean(self) -> bool:
        return (
            self._may_be_lean
            and not self._lock.locked()
            and getattr(_recorder, "_async_collector_resolved", False) is True
            and getattr(_recorder, "_async_metrics_collector", _UNKNOWN) is None
        )

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if not self._waiting and self._available_connections and self._lean():
            connection: AbstractConnection = self._available_connections.pop()
            self._in_use_connections.add(connection)
            try:
                # ensure_connection's checks: connected, and nothing unread (an unread reply,
                # or the server's close); what is not clean gets ensure_connection itself.
                try:
                    clean = connection.is_connected and not await connection.can_read()
                except (RedisConnectionError, TimeoutError, OSError):
                    clean = False
                if not clean:
                    await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        if not self._waiting and self.can_get_connection():
            try:
                connection = await ConnectionPool.get_connection(self)  # type: ignore[no-untyped-call]
                return connection
            except MaxConnectionsError:
                pass  # taken while this task waited for the pool's lock: wait like the rest
        self._waiting += 1
        try:
            connection = await super().get_connection()  # type: ignore[no-untyped-call]
            return connection
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise PoolTimeout(
                    f"no free Redis connection within {self.timeout:g} s "
                    f"({self.max_connections} in use)"
                ) from exc
            raise
        finally:
            self._waiting -= 1

    async def release(self, connection: AbstractConnection) -> None:
        if self._lean() and not connection.should_reconnect():  # type: ignore[no-untyped-call]
            self._in_use_connections.remove(connection)
            self._available_connections.append(connection)
        else:
            await ConnectionPool.release(self, connection)
        if self._waiting:
            async with self._condition:
                self._condition.notify()


class _WaitingSentinelPool(SentinelConnectionPool, WaitingConnectionPool):
    """The Sentinel primary's pool (which connection to make) that waits like the others."""


def redis_client(
    uri: str,
    *,
    socket_timeout: float = 1.0,
    read_timeout: bool = True,
    max_connections: int = MAX_CONNECTIONS,
    pool_timeout: float = POOL_TIMEOUT,
) -> RedisClient:
    """An asyncio Redis client for a ``redis``-family URI (``gatekeeper.quota.factory``).

    Commands are never retried by the client: a script that ran but whose reply was lost must
    not debit twice. Failures go to the caller, whose ``on_store_error`` decides.
    ``socket_timeout`` bounds connecting and, unless ``read_timeout`` is false (the caller
    bounds every command itself), each command; a cluster client always keeps both.
    ``max_connections`` bounds the client's pool; a command that finds every connection busy
    waits up to ``pool_timeout`` seconds for one, then fails with ``PoolTimeout``. A cluster
    client keeps redis-py's own pools (``max_connections`` per node, and no waiting: redis-py
    has no waiting pool for a cluster).
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
        return RedisCluster(startup_nodes=nodes, max_connections=max_connections, **auth, **options)
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
        primary: Redis = sentinel.master_for(
            service,
            connection_pool_class=_WaitingSentinelPool,
            max_connections=max_connections,
            timeout=pool_timeout,
        )
        return primary
    if parsed.scheme == "redis+unix":
        uri = "unix" + uri[len("redis+unix") :]
    pool = WaitingConnectionPool.from_url(
        uri,
        max_connections=max_connections,
        timeout=pool_timeout,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=per_command,
        socket_connect_timeout=socket_timeout,
    )
    return Redis.from_pool(pool)


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
