"""In-process quotas: the embedded default, for one process, with the Redis store's semantics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from gatekeeper.contract import QuotaSpec
from gatekeeper.health import PartHealth
from gatekeeper.quota.base import (
    BucketState,
    QuotaAdjustment,
    QuotaResult,
    Source,
    bucket_retry,
    bucket_state,
    most_delayed,
    window_state,
)
from gatekeeper.quota.windows import parse_window

# key -> [value, stamp, expires_at]: a bucket's level and last update, or a window's count and
# start. An entry past ``expires_at`` is the same as no entry (a full bucket, an unused window).
_Entry = list[float]


class MemoryQuotaStore:
    """Token buckets and calendar windows in a dict. All-or-nothing across a request's quotas.

    A bucket is created full; it gains ``rate`` every ``period`` seconds up to ``capacity``, and
    may go below zero when reconciliation charges more than was reserved (a debt).
    A window counts what was spent since its calendar start. Entries that reached their idle
    state (a full bucket, a past window) are dropped when the table grows past ``max_keys``.
    ``clock`` is wall-clock seconds, because windows follow the calendar.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_keys: int = 1_000_000,
        *,
        source: Source = "store",
    ) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._max_keys = max_keys
        self._source: Source = source
        self._windows: dict[str, tuple[float, float]] = {}

    def _bucket_level(self, spec: QuotaSpec, now: float) -> float:
        entry = self._entries.get(spec.key)
        if entry is None or now >= entry[2]:
            return float(spec.capacity)
        tokens, updated, _ = entry
        elapsed = max(0.0, now - updated)
        return min(float(spec.capacity), tokens + elapsed * spec.refill_per_second)

    def _window_used(self, key: str, start: float) -> float:
        entry = self._entries.get(key)
        if entry is None or entry[1] != start:
            return 0.0
        return entry[0]

    def _bounds(self, spec: QuotaSpec, now: float) -> tuple[float, float]:
        # Calendar arithmetic once per window and period, not once per request.
        text = spec.window or ""
        cached = self._windows.get(text)
        if cached is None or not cached[0] <= now < cached[1]:
            cached = parse_window(text).bounds(now)
            self._windows[text] = cached
        return cached

    def _put_bucket(self, spec: QuotaSpec, level: float, now: float) -> None:
        rate = spec.refill_per_second
        full_at = now + (spec.capacity - level) / rate if rate > 0 else math.inf
        self._entries[spec.key] = [level, now, full_at]

    async def acquire(self, specs: list[QuotaSpec]) -> QuotaResult:
        now = self._clock()
        # One pass to read every quota (level or used, window bounds, can it pay?)...
        rows: list[tuple[QuotaSpec, float, float, float, bool]] = []
        admitted = True
        for spec in specs:
            if spec.kind == "window":
                start, end = self._bounds(spec, now)
                used = self._window_used(spec.key, start)
                ok = spec.cost == 0 or used + spec.cost <= spec.capacity
                rows.append((spec, used, start, end, ok))
            else:
                level = self._bucket_level(spec, now)
                ok = spec.cost == 0 or level >= spec.cost
                rows.append((spec, level, 0.0, 0.0, ok))
            admitted = admitted and ok
        if admitted and len(self._entries) + len(specs) > self._max_keys:
            self._evict(now)
        # ...and one to debit them all (or none) and describe them.
        states: list[BucketState] = []
        refusing: list[BucketState] = []
        for spec, value, start, end, ok in rows:
            if spec.kind == "window":
                if admitted:
                    value += spec.cost
                    self._entries[spec.key] = [value, start, end]
                state = window_state(
                    spec, value, start, end, now, refused=not ok, source=self._source
                )
            else:
                if admitted:
                    value -= spec.cost
                    self._put_bucket(spec, value, now)
                retry = 0.0 if ok else bucket_retry(spec, value)
                state = bucket_state(spec, value, retry=retry, source=self._source)
            states.append(state)
            if not ok:
                refusing.append(state)
        if admitted:
            return QuotaResult(True, tuple(states))
        return QuotaResult(False, tuple(states), most_delayed(refusing))

    async def adjust(self, adjustments: list[QuotaAdjustment]) -> None:
        now = self._clock()
        for adj in adjustments:
            spec = adj.spec
            if adj.delta == 0:
                continue
            if spec.kind == "window":
                start, end = self._bounds(spec, now)
                if adj.delta < 0 and adj.window_start not in (None, start):
                    continue  # a refund for a window that is over: nothing to give back
                used = self._window_used(spec.key, start)
                self._entries[spec.key] = [max(0.0, used + adj.delta), start, end]
            else:
                level = self._bucket_level(spec, now)
                self._put_bucket(spec, min(float(spec.capacity), level - adj.delta), now)

    def _evict(self, now: float) -> None:
        for key in [k for k, entry in self._entries.items() if now >= entry[2]]:
            del self._entries[key]
        if len(self._entries) >= self._max_keys:
            # Still crowded: forget the least recently updated half (they refill meanwhile).
            ordered = sorted(self._entries, key=lambda k: self._entries[k][1])
            for key in ordered[: len(ordered) // 2]:
                del self._entries[key]

    async def health(self) -> PartHealth:
        return PartHealth(
            ok=True, detail={"backend": "memory", "state": "up", "keys": len(self._entries)}
        )

    async def aclose(self) -> None:
        self._entries.clear()
