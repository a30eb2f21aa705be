"""In-process token buckets: the embedded default, for one process."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from gatekeeper.contract import QuotaSpec
from gatekeeper.quota.base import BucketState, QuotaResult, window_seconds


class MemoryQuotaStore:
    """Token buckets in a dict. All-or-nothing across a request's buckets.

    A bucket is created full; it gains ``rate`` every ``period`` seconds up to ``capacity``.
    Buckets idle long enough to be full again are forgotten, so memory tracks active keys only.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 1_000_000):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_keys = max_keys

    def _level(self, spec: QuotaSpec, now: float) -> float:
        stored = self._buckets.get(spec.key)
        if stored is None:
            return float(spec.capacity)
        tokens, updated = stored
        return min(float(spec.capacity), tokens + (now - updated) * spec.refill_per_second)

    async def acquire(self, specs: list[QuotaSpec]) -> QuotaResult:
        now = self._clock()
        levels = [self._level(spec, now) for spec in specs]
        refused: BucketState | None = None
        for spec, level in zip(specs, levels, strict=True):
            if level < spec.cost:
                refused = _state(spec, level, refused=True)
                break
        if refused is not None:
            states = tuple(_state(s, lv) for s, lv in zip(specs, levels, strict=True))
            return QuotaResult(False, states, refused)
        if len(self._buckets) > self._max_keys:
            self._evict_full(now, specs)
        states_list = []
        for spec, level in zip(specs, levels, strict=True):
            left = level - spec.cost
            self._buckets[spec.key] = (left, now)
            states_list.append(_state(spec, left))
        return QuotaResult(True, tuple(states_list))

    def _evict_full(self, now: float, keep: list[QuotaSpec]) -> None:
        # Without specs we cannot know a bucket's capacity; drop the least recently used half.
        ordered = sorted(self._buckets.items(), key=lambda item: item[1][1])
        for key, _ in ordered[: len(ordered) // 2]:
            self._buckets.pop(key, None)

    async def aclose(self) -> None:
        self._buckets.clear()


def _state(spec: QuotaSpec, level: float, *, refused: bool = False) -> BucketState:
    rate = spec.refill_per_second
    full_in = (spec.capacity - level) / rate if rate > 0 else math.inf
    retry = 0.0
    if refused:
        retry = (spec.cost - level) / rate if rate > 0 else math.inf
    return BucketState(
        name=spec.name,
        key=spec.key,
        unit=spec.unit,
        capacity=spec.capacity,
        remaining=max(0.0, level),
        window_seconds=window_seconds(spec),
        full_in_seconds=max(0.0, full_in),
        retry_after_seconds=retry,
    )
