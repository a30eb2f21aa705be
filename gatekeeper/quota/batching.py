"""Concurrent script calls to one Redis, written together when they would otherwise queue.

A call goes out at once while fewer than ``max_in_flight`` calls are on the wire (the common,
lightly loaded case: no added latency, no extra task). Past that, calls wait in a queue, and
the next free slot sends everything queued as one pipeline (not a transaction: each script is
still atomic on its own, and the scripts of different requests need not be atomic together).
Under load this turns N writes, N reads and N pool checkouts into one of each. Every request
still costs one round trip, shared with its neighbours instead of paid alone.

Only for clients that talk to one server (single Redis, the Sentinel primary); a cluster client
routes each script to its slot's node itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from gatekeeper.errors import QuotaStoreError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gatekeeper.quota.redis_store import LuaScript

_Call = tuple["LuaScript", list[str], list[str], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Sends script calls at once, or, while ``max_in_flight`` are on the wire, queues them
    for the next free slot to send as one pipeline."""

    def __init__(
        self,
        client: Redis,
        description: str,
        *,
        timeout: float = 1.0,
        max_in_flight: int = 4,
        max_batch: int = 512,
    ) -> None:
        self.client = client
        self.description = description
        # A pipeline has no caller of its own to time it out: a stalled server must not hold
        # a slot for ever.
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._pending: list[_Call] = []
        self._in_flight = 0
        self._flushing: set[asyncio.Task[None]] = set()

    async def run(self, script: LuaScript, keys: list[str], args: list[str]) -> Any:
        """The script's reply; ``QuotaStoreError`` when Redis cannot answer."""
        if self._in_flight < self.max_in_flight and not self._pending:
            self._in_flight += 1
            try:
                return await self._one(script, keys, args)
            except (RedisError, OSError) as exc:
                raise QuotaStoreError(f"quota store {self.description}: {exc}") from exc
            finally:
                self._in_flight -= 1
                self._drain()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((script, keys, args, future))
        return await future

    def _drain(self) -> None:
        """Send what is queued as one pipeline, if a slot is free."""
        # A caller that gave up (its timeout) must not be debited by a script sent after it left.
        self._pending = [call for call in self._pending if not call[3].done()]
        if not self._pending or self._in_flight >= self.max_in_flight:
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._send_batch(batch)
        except (RedisError, OSError, TimeoutError) as exc:
            error = QuotaStoreError(f"quota store {self.description}: {exc!r}")
            for *_, future in batch:
                _settle(future, error, self.description)
        except BaseException as exc:  # cancelled while flushing: nobody may wait forever
            for *_, future in batch:
                _settle(future, QuotaStoreError(f"flush interrupted: {exc!r}"), self.description)
            raise
        finally:
            self._in_flight -= 1
            self._drain()

    async def _send_batch(self, batch: list[_Call]) -> None:
        replies = await self._pipeline(batch)
        unknown = [c for c, r in zip(batch, replies, strict=True) if isinstance(r, NoScriptError)]
        if unknown:
            # The server lost its scripts (first use, restart, failover): load each once, then
            # run what it refused again.
            for script in {call[0] for call in unknown}:
                await self.client.script_load(script.source)
            for call, reply in zip(unknown, await self._pipeline(unknown), strict=True):
                _settle(call[3], reply, self.description)
        for (*_, future), reply in zip(batch, replies, strict=True):
            _settle(future, reply, self.description)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _one(self, script: LuaScript, keys: list[str], args: list[str]) -> Any:
        try:
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(script.source, len(keys), *keys, *args)


def _settle(future: asyncio.Future[Any], reply: Any, description: str) -> None:
    if future.done():
        return  # its request gave up (timeout): the reply has no one to go to
    if isinstance(reply, QuotaStoreError):
        future.set_exception(reply)
    elif isinstance(reply, Exception):
        future.set_exception(QuotaStoreError(f"quota store {description}: {reply}"))
    else:
        future.set_result(reply)
