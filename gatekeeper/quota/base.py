"""What every quota store provides, and the state it reports back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from gatekeeper.contract import QuotaSpec


@dataclass(frozen=True, slots=True)
class BucketState:
    """One quota after a check: how much is left and when it is full again."""

    name: str
    key: str
    unit: str
    capacity: int
    remaining: float
    window_seconds: float
    full_in_seconds: float
    retry_after_seconds: float = 0.0

    @property
    def fraction_left(self) -> float:
        return self.remaining / self.capacity if self.capacity else 0.0


@dataclass(frozen=True, slots=True)
class QuotaResult:
    """The outcome of checking every quota of one request (all debited, or none)."""

    allowed: bool
    states: tuple[BucketState, ...]
    refused: BucketState | None = None

    @property
    def most_constrained(self) -> BucketState | None:
        if self.refused is not None:
            return self.refused
        return min(self.states, key=lambda s: s.fraction_left, default=None)

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before retrying: never zero, never negative."""
        if self.refused is None:
            return 0
        return max(1, math.ceil(self.refused.retry_after_seconds))


class QuotaStore(Protocol):
    """Checks and debits token buckets atomically."""

    async def acquire(self, specs: list[QuotaSpec]) -> QuotaResult:
        """Debit every quota's cost, or none of them if any one cannot pay."""
        ...

    async def aclose(self) -> None: ...


def window_seconds(spec: QuotaSpec) -> float:
    """Seconds a bucket takes to refill from empty to full."""
    rate = spec.refill_per_second
    return spec.capacity / rate if rate > 0 else math.inf
