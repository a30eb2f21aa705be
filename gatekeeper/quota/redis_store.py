"""Quotas in Redis: one Lua script checks and debits all of a request's quotas atomically.

The scripts (``lua/*.lua``, package data) are run by SHA with ``EVALSHA``; a server that does not
know a script yet answers ``NOSCRIPT`` and gets it once with ``EVAL``, which also caches it. Time
is Redis' ``TIME``, never an app server's clock, so every replica agrees.

Keys: ``<prefix>:{<owner>}:<rest>`` where the policy's key is ``<kind>:<id>:<rest>`` and the
owner is ``<kind>:<id>`` (``subject:s1``, ``org:acme``): every quota of one owner shares one Redis
Cluster slot, and one owner's key is the same whichever subject's request touches it. A policy
key that already has a hash tag (``{org:acme}:subject:s1:requests``) keeps it, so a policy can
put the quotas it wants checked together into one slot.

Round trips: on a single Redis (or the primary behind Sentinel) every request is one
``EVALSHA``. In a cluster, a request whose quotas live in several slots runs one script per slot,
concurrently (still one round trip of latency); if any slot refuses, the slots that debited are
refunded at once (a second round trip, on refusals only), so the end state is "none debited".

Settlements (``adjust``, the corrections after a response) are deferred when
``settle_interval`` > 0: they wait in a ``SettlementQueue``, merged per quota and window, and
every settlement of the interval goes out in one script call (per slot). So a request costs one
``EVALSHA`` plus a small share of one, instead of two.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError

from gatekeeper.contract import QuotaSpec
from gatekeeper.errors import QuotaStoreError, QuotaStoreTimeout
from gatekeeper.health import PartHealth
from gatekeeper.quota.base import (
    BucketState,
    QuotaAdjustment,
    QuotaResult,
    bucket_retry,
    bucket_state,
    most_delayed,
    window_state,
)
from gatekeeper.quota.batching import ScriptBatcher, SettlementQueue
from gatekeeper.quota.deadline import hard_bound, wire_timeout
from gatekeeper.quota.windows import parse_window
from gatekeeper.redis_client import RedisClient


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source and its SHA1, as ``EVALSHA`` names it (``sha_bytes``: encoded once)."""

    source: str
    sha: str
    sha_bytes: bytes

    @classmethod
    def load(cls, *names: str) -> LuaScript:
        """Concatenate package-data scripts (shared functions first)."""
        folder = resources.files("gatekeeper.quota") / "lua"
        source = "\n".join((folder / name).read_text(encoding="utf-8") for name in names)
        sha = hashlib.sha1(source.encode()).hexdigest()
        return cls(source, sha, sha.encode())


ACQUIRE = LuaScript.load("calendar.lua", "acquire.lua")
ADJUST = LuaScript.load("calendar.lua", "adjust.lua")


@functools.lru_cache(maxsize=65_536)
def storage_key(prefix: str, key: str) -> str:
    """The Redis key of a quota key, with the hash tag that picks its cluster slot."""
    opening = key.find("{")
    if opening >= 0 and key.find("}", opening + 2) > opening:
        return f"{prefix}:{key}"  # the policy chose the tag
    parts = key.split(":", 2)
    if len(parts) == 3:
        return f"{prefix}:{{{parts[0]}:{parts[1]}}}:{parts[2]}"
    return f"{prefix}:{{{key}}}"


@functools.lru_cache(maxsize=65_536)
def _key_bytes(prefix: str, key: str) -> bytes:
    """``storage_key``, encoded as it goes on the wire."""
    return storage_key(prefix, key).encode()


def _spec_arg(spec: QuotaSpec, amount: int) -> bytes:
    """A quota's one script argument: its six fields joined by spaces (``lua/acquire.lua``)."""
    return _arg(spec.kind, spec.capacity, spec.refill_per_second, spec.window, amount)


@functools.lru_cache(maxsize=4096)
def _arg(kind: str, capacity: int, per_second: float, window: str | None, amount: int) -> bytes:
    # Cached: a policy hands out few distinct quota shapes, and every request repeats them.
    # One argument per quota, not six: redis-py (and the packing) pays per argument.
    if kind == "window":
        calendar = parse_window(window or "")
        return b"w %d 0 %d %d %d" % (capacity, amount, calendar.code, calendar.multiples)
    return b"b %d %b %d 0 0" % (capacity, repr(per_second).encode(), amount)


def _window_start(start: float | None) -> bytes:
    return b"-" if start is None else f"{start:.0f}".encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisQuotaStore:
    """Token buckets and calendar windows in Redis (single node, Sentinel or Cluster).

    Raises ``QuotaStoreError`` when Redis cannot answer, and ``QuotaStoreTimeout`` when a call
    got no answer within ``timeout`` seconds of being sent (``wire_timeout``: the event loop's
    own backlog does not count). The per-quota failure modes and the circuit breaker are the
    job of ``FailoverQuotaStore``, which wraps this store in production.

    ``settle_interval`` (seconds; 0: write each settlement at once) defers ``adjust``: see
    ``SettlementQueue``. Deferred corrections are sent within ``timeout`` and when
    ``settle_batch`` distinct ones are waiting, whatever the interval; ``aclose`` sends them.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "gk",
        description: str = "redis",
        timeout: float = 1.0,
        settle_interval: float = 0.0,
        settle_batch: int = 256,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("a quota key prefix may not contain '{' or '}' (hash tags)")
        self.client = client
        self.prefix = prefix
        self.description = description
        self.cluster = isinstance(client, RedisCluster)
        self.timeout = timeout
        self._batcher: ScriptBatcher | None = None
        if not isinstance(client, RedisCluster):
            self._batcher = ScriptBatcher(client, description, timeout=timeout)
        #: Wall time within which every call of this store returns whatever happens: each
        #: goes through the batcher, whose sends and queue are bounded by ``hard_bound``. None
        #: for a cluster (a refund may follow a request's checks). ``FailoverQuotaStore`` arms
        #: no cap of its own over a store that has one.
        self.call_bound: float | None = None if self.cluster else hard_bound(timeout)
        #: Deferred settlements (None when ``settle_interval`` is 0).
        self.settlements: SettlementQueue | None = None
        if settle_interval > 0:
            self.settlements = SettlementQueue(
                self._write,
                interval=settle_interval,
                max_pending=settle_batch,
                timeout=timeout,
                description=description,
            )

    async def _run(self, script: LuaScript, keys: list[bytes], args: list[bytes]) -> Any:
        if self._batcher is not None:
            return await self._batcher.run(script, keys, args)
        try:
            async with wire_timeout(self.timeout):
                try:
                    return await self.client.evalsha(script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    return await self.client.eval(script.source, len(keys), *keys, *args)
        except TimeoutError as exc:
            raise self._timed_out() from exc
        except (RedisError, OSError) as exc:
            raise QuotaStoreError(f"quota store {self.description}: {exc}") from exc

    def _timed_out(self) -> QuotaStoreTimeout:
        return QuotaStoreTimeout(
            f"quota store {self.description}: no answer within {self.timeout * 1000:g} ms"
        )

    def _groups(self, keys: list[bytes]) -> list[list[int]]:
        """Indices of ``keys`` grouped by cluster slot (one group outside a cluster)."""
        if not self.cluster:
            return [list(range(len(keys)))]
        slots: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            slots.setdefault(key_slot(key), []).append(index)
        return list(slots.values())

    async def acquire(self, specs: list[QuotaSpec]) -> QuotaResult:
        if not specs:
            return QuotaResult(True, ())
        keys = [_key_bytes(self.prefix, spec.key) for spec in specs]
        groups = self._groups(keys)
        if len(groups) == 1:
            # The common case (one Redis, or one slot): one script call, nothing to undo.
            only = await self._acquire_group(specs, keys, groups[0])
            return _result(only)
        replies = await asyncio.gather(
            *(self._acquire_group(specs, keys, group) for group in groups),
            return_exceptions=True,
        )
        answered = [r for r in replies if isinstance(r, _GroupReply)]
        debited = [r for r in answered if r.admitted]
        if len(debited) < len(groups):
            # Another slot refused or failed: give back what this request took elsewhere.
            await self._refund(specs, debited, swallow=len(answered) < len(groups))
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        states: list[BucketState] = [None] * len(specs)  # type: ignore[list-item]
        refusing: list[BucketState] = []
        for reply in answered:
            undo = len(debited) < len(groups)
            for index, state, refused in zip(reply.group, reply.states, reply.refused, strict=True):
                states[index] = _undone(specs[index], state) if undo and reply.admitted else state
                if refused:
                    refusing.append(state)
        if len(debited) == len(groups):
            return QuotaResult(True, tuple(states))
        return QuotaResult(False, tuple(states), most_delayed(refusing))

    async def _acquire_group(
        self, specs: list[QuotaSpec], keys: list[bytes], group: list[int]
    ) -> _GroupReply:
        args = [_spec_arg(specs[index], specs[index].cost) for index in group]
        reply = await self._run(ACQUIRE, [keys[i] for i in group], args)
        admitted = int(reply[0]) == 1
        now = int(reply[1]) / 1e6
        states, refusals = [], []
        for position, index in enumerate(group):
            spec = specs[index]
            value, start, end = reply[2 + 3 * position : 5 + 3 * position]
            level = float(value)
            if spec.kind == "window":
                first, last = float(_text(start)), float(_text(end))
                refused = not admitted and spec.cost > 0 and level + spec.cost > spec.capacity
                states.append(window_state(spec, level, first, last, now, refused=refused))
            else:
                refused = not admitted and spec.cost > 0 and level < spec.cost
                retry = bucket_retry(spec, level) if refused else 0.0
                states.append(bucket_state(spec, level, retry=retry))
            refusals.append(refused)
        return _GroupReply(group, admitted, states, refusals)

    async def _refund(
        self, specs: list[QuotaSpec], debited: list[_GroupReply], *, swallow: bool
    ) -> None:
        refunds = [
            QuotaAdjustment(specs[index], -specs[index].cost, state.window_start)
            for reply in debited
            for index, state in zip(reply.group, reply.states, strict=True)
        ]
        try:
            # At once, never deferred: until it lands, the debit it undoes may refuse others.
            await self._write(refunds)
        except QuotaStoreError:
            if not swallow:
                raise

    async def adjust(self, adjustments: list[QuotaAdjustment]) -> None:
        """Apply settlement corrections: queued for the next flush when deferred, else now.

        Deferred, this returns without a round trip and never raises; a flush that fails is
        reported to ``settlements.on_lost`` (``FailoverQuotaStore`` counts it).
        """
        queue = self.settlements
        if queue is not None and not queue.closed:
            queue.add(adjustments)
            return
        await self._write(adjustments)

    async def flush(self) -> None:
        """Send the deferred settlements now (nothing to do when settlements are immediate)."""
        if self.settlements is not None:
            await self.settlements.flush()

    async def _write(self, adjustments: list[QuotaAdjustment]) -> None:
        """One ADJUST script per slot group, in order; ``QuotaStoreError`` on failure."""
        todo = [a for a in adjustments if a.delta != 0]
        if not todo:
            return
        keys = [_key_bytes(self.prefix, a.spec.key) for a in todo]
        calls = []
        for group in self._groups(keys):
            # One argument per correction: the quota's six fields and the window start ("-" for
            # buckets), as lua/adjust.lua splits them.
            args = [
                b"%b %b" % (_spec_arg(adj.spec, adj.delta), _window_start(adj.window_start))
                for adj in (todo[index] for index in group)
            ]
            calls.append(self._run(ADJUST, [keys[i] for i in group], args))
        if len(calls) == 1:
            # The common case: awaited directly, without the task gather would wrap it in
            # (about a fifth of a settlement's CPU; bench/profile.py).
            await calls[0]
        else:
            await asyncio.gather(*calls)

    async def health(self) -> PartHealth:
        """A ``PING`` within the store's timeout: ``state`` ``up``, or ``down`` and why."""
        try:
            async with wire_timeout(self.timeout):
                await self.client.ping()
        except TimeoutError:
            error = str(self._timed_out())
            down = {"backend": self.description, "state": "down", "error": error, "timeout": True}
            return PartHealth(ok=False, detail=down)
        except (RedisError, OSError) as exc:
            down = {"backend": self.description, "state": "down", "error": str(exc)}
            return PartHealth(ok=False, detail=down)
        return PartHealth(ok=True, detail={"backend": self.description, "state": "up"})

    async def aclose(self) -> None:
        """Send the deferred settlements (a clean shutdown loses none), then disconnect."""
        if self.settlements is not None:
            await self.settlements.aclose()
        await self.client.aclose()


def _result(reply: _GroupReply) -> QuotaResult:
    if reply.admitted:
        return QuotaResult(True, tuple(reply.states))
    refusing = [s for s, refused in zip(reply.states, reply.refused, strict=True) if refused]
    return QuotaResult(False, tuple(reply.states), most_delayed(refusing))


@dataclass(slots=True)
class _GroupReply:
    """One slot's script reply: its quotas' indices, whether it debited, their states."""

    group: list[int]
    admitted: bool
    states: list[BucketState]
    refused: list[bool]


def _undone(spec: QuotaSpec, state: BucketState) -> BucketState:
    """A debited state as it is after the refund of a request refused in another slot."""
    return replace(state, remaining=min(state.capacity, state.remaining + spec.cost))
