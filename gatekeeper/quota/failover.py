"""What happens when the shared quota store is unreachable or slow: each quota's ``on_store_error``.

``FailoverQuotaStore`` wraps a shared store (Redis). A call fails when the store did not answer:
the connection was refused or reset, or no reply came within ``timeout`` (default 250 ms) of the
call being sent. That timeout is measured on the store call (``wire_timeout``), never on this
process's event loop: a saturated process is slow, not a reason to call a healthy Redis down.
(A last-resort cap of ``max(1 s, 20 * timeout)`` of wall time bounds every call whatever
happens: the Redis store's own, ``call_bound``, or else this layer's.) When a call fails, each
quota of the request gets its own mode:

- ``deny``: the request is refused with 503 ``quota_store_unavailable`` (``QuotaStoreError``).
  One ``deny`` quota among a request's quotas is enough to refuse it.
- ``allow``: the quota is not checked; the request goes on. Counted (``allowed_unchecked``),
  recorded in the decision log (``unchecked``), and logged once per outage.
- ``local``: the quota is checked against an in-process bucket holding ``local_fraction`` of the
  capacity and refill rate (set it to about 1 / replicas, so the fleet stays near the limit).
  Bound, across all R replicas together, for a bucket of capacity C: at most
  ``C + R * floor(C * local_fraction)`` admitted from a full bucket (C counted by Redis before
  or up to the failure, the rest by the replicas' local buckets), plus what the refill rates
  add over time. docs/quotas.md has it, and tests/quota/test_failover.py measures it.

A circuit breaker keeps failing calls from costing every request the timeout: it opens (the
store is "down") on a refused or reset connection at once, and after ``failure_threshold``
timeouts in a row (one slow reply is not an outage). While open, requests use their modes
directly, without calling the store, until ``retry_interval`` has passed; then one request (or a
/healthz call) probes it (half-open). The first success closes it (automatic recovery, logged).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gatekeeper.contract import QuotaSpec
from gatekeeper.errors import QuotaStoreError, QuotaStoreTimeout
from gatekeeper.health import PartHealth
from gatekeeper.quota.base import QuotaAdjustment, QuotaResult, QuotaStore
from gatekeeper.quota.batching import SettlementQueue
from gatekeeper.quota.deadline import hard_bound
from gatekeeper.quota.memory import MemoryQuotaStore

log = logging.getLogger("gatekeeper.quota")


class FailoverQuotaStore:
    """A shared store with timeouts, per-quota failure modes and automatic recovery."""

    def __init__(
        self,
        store: QuotaStore,
        *,
        timeout: float = 0.25,
        local_fraction: float = 0.25,
        retry_interval: float = 1.0,
        failure_threshold: int = 3,
        description: str = "redis",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < local_fraction <= 1:
            raise ValueError("local_fraction must be in (0, 1]")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.store = store
        self.timeout = timeout
        #: Wall-time cap on any one call, in case a store forgets its own timeout.
        self.cap = hard_bound(timeout)
        # A store that bounds every call within the cap itself (``RedisQuotaStore.call_bound``)
        # gets no second timer per call (an ``asyncio.timeout`` is a timer handle and two
        # coroutines: about 4 µs, per request).
        bound = getattr(store, "call_bound", None)
        self._bounded = isinstance(bound, float | int) and bound <= self.cap
        self.failure_threshold = failure_threshold
        self._timeouts_in_a_row = 0
        self.local_fraction = local_fraction
        self.retry_interval = retry_interval
        self.description = description
        self.local = MemoryQuotaStore(source="local")
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._up = True
        self._down_since: float | None = None
        self._down_wall: str | None = None
        self._retry_at = 0.0
        self._probing = False
        self._last_error: str | None = None
        # A store that defers settlements writes them after ``adjust`` returned: its failures
        # reach this layer through the queue.
        queue = getattr(store, "settlements", None)
        self._queue = queue if isinstance(queue, SettlementQueue) else None
        if self._queue is not None:
            self._queue.on_lost = self._settlements_lost

    @property
    def up(self) -> bool:
        return self._up

    def _may_call(self) -> bool:
        if self._up:
            return True
        if self._probing or self._clock() < self._retry_at:
            return False
        self._probing = True
        return True

    def _succeeded(self) -> None:
        self._probing = False
        self._timeouts_in_a_row = 0
        if not self._up:
            downtime = self._clock() - (self._down_since or self._clock())
            self._up, self._down_since, self._down_wall = True, None, None
            self.counters["recoveries"] += 1
            log.warning(
                "quota store %s recovered after %.1f s (%d requests allowed unchecked, "
                "%d checked locally, %d refused meanwhile)",
                self.description,
                downtime,
                self.counters["outage_allowed_unchecked"],
                self.counters["outage_local"],
                self.counters["outage_denied"],
            )
            for name in ("outage_allowed_unchecked", "outage_local", "outage_denied"):
                self.counters.pop(name, None)

    def _failed(self, exc: BaseException) -> None:
        self._probing = False
        self._retry_at = self._clock() + self.retry_interval
        self.counters["store_errors"] += 1
        self._last_error = _describe(exc, self.cap)
        timed_out = isinstance(exc, QuotaStoreTimeout | TimeoutError)
        if timed_out:
            self.counters["store_timeouts"] += 1
            self._timeouts_in_a_row += 1
            if self._up and self._timeouts_in_a_row < self.failure_threshold:
                return  # one slow reply: this request falls back, the breaker stays closed
        if self._up:
            self._up = False
            self._down_since = self._clock()
            self._down_wall = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            log.warning(
                "quota store %s unavailable (%s): quotas use their on_store_error mode "
                "until it answers again",
                self.description,
                self._last_error,
            )
            self._drop_idle_connections()

    def _drop_idle_connections(self) -> None:
        # Pooled connections to a Redis that went away are dead; without this, each one would
        # fail one more request after the restart.
        pool = getattr(getattr(self.store, "client", None), "connection_pool", None)
        disconnect = getattr(pool, "disconnect", None)
        if disconnect is not None:
            task = asyncio.ensure_future(disconnect(inuse_connections=False))
            task.add_done_callback(_ignore_result)

    async def _call(self, make: Callable[[], Any]) -> tuple[bool, Any]:
        """Run ``make()`` against the store within the timeout: (ok, value)."""
        if not self._may_call():
            return False, None
        try:
            # The store times its own sends (wire_timeout); this cap only catches a call that
            # never ends. asyncio.timeout, not wait_for: no task per call.
            if self._bounded:
                value = await make()
            else:
                async with asyncio.timeout(self.cap):
                    value = await make()
        except (QuotaStoreError, TimeoutError) as exc:
            self._failed(exc)
            return False, None
        except BaseException:
            self._probing = False
            raise
        self._succeeded()
        return True, value

    async def acquire(self, specs: list[QuotaSpec]) -> QuotaResult:
        ok, result = await self._call(lambda: self.store.acquire(specs))
        if ok:
            assert isinstance(result, QuotaResult)
            return result
        return await self._fallback(specs)

    async def _fallback(self, specs: list[QuotaSpec]) -> QuotaResult:
        denying = [spec.name for spec in specs if spec.on_store_error == "deny"]
        if denying:
            self._count("denied")
            raise QuotaStoreError(
                f"quota store unavailable ({self._last_error}); "
                f"quota {denying[0]!r} does not run without it"
            )
        local = [self._scaled(spec) for spec in specs if spec.on_store_error == "local"]
        unchecked = tuple(spec.name for spec in specs if spec.on_store_error == "allow")
        if unchecked:
            self._count("allowed_unchecked")
        if not local:
            return QuotaResult(True, (), unchecked=unchecked)
        self._count("local")
        result = await self.local.acquire(local)
        return QuotaResult(result.allowed, result.states, result.refused, unchecked)

    def _scaled(self, spec: QuotaSpec) -> QuotaSpec:
        capacity = max(1, math.floor(spec.capacity * self.local_fraction))
        rate = spec.rate * self.local_fraction
        return spec.model_copy(update={"capacity": capacity, "rate": rate})

    def _count(self, what: str) -> None:
        self.counters[what] += 1
        self.counters[f"outage_{what}"] += 1

    async def adjust(self, adjustments: list[QuotaAdjustment]) -> None:
        """Reconcile; never raises (a lost correction is counted, the response is already out)."""
        shared = [a for a in adjustments if a.source == "store"]
        local = [
            QuotaAdjustment(self._scaled(a.spec), a.delta, a.window_start, "local")
            for a in adjustments
            if a.source == "local"
        ]
        if local:
            await self.local.adjust(local)
        if not shared:
            return
        if self._queue is not None and not self._queue.closed:
            # Queued, no round trip: no success to learn from. A store known to be down is
            # skipped as below; a failed flush is counted by ``_settlements_lost``.
            if self._up:
                await self.store.adjust(shared)
            else:
                self.counters["adjustments_lost"] += 1
            return
        ok, _ = await self._call(lambda: self.store.adjust(shared))
        if not ok:
            self.counters["adjustments_lost"] += 1

    def _settlements_lost(self, exc: BaseException, settlements: int) -> None:
        """A deferred flush failed: as if each settlement it carried had failed on its own."""
        self.counters["adjustments_lost"] += settlements
        if self._up:
            self._failed(exc)

    async def health(self) -> PartHealth:
        """State for /healthz and /readyz, from a PING within the timeout (which may also end
        an outage).

        ``store`` is the shared store's state (``up``/``down``); ``state`` is ``up`` or, while
        the store is down, ``degraded``: requests are still served as each quota's
        ``on_store_error`` says, so a Redis outage must not pull every replica out of a load
        balancer (that would turn a quota outage into a full one).
        """
        if not self._probing:
            self._retry_at = 0.0
            await self._call(self._probe)
        report: dict[str, Any] = {
            "backend": self.description,
            "state": "up" if self._up else "degraded",
            "store": "up" if self._up else "down",
            "timeout_ms": round(self.timeout * 1000, 3),
            "counters": {k: v for k, v in self.counters.items() if not k.startswith("outage_")},
        }
        if self._last_error is not None:
            report["last_error"] = self._last_error
        if not self._up:
            report["down_since"] = self._down_wall
        return PartHealth(ok=True, degraded=not self._up, detail=report)

    async def _probe(self) -> None:
        report = await self.store.health()
        if not report.ok:
            error = QuotaStoreTimeout if report.detail.get("timeout") else QuotaStoreError
            raise error(str(report.detail.get("error", "store reports down")))

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.local.aclose()


def _describe(exc: BaseException, cap: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {cap * 1000:g} ms"
    return str(exc) or type(exc).__name__


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
