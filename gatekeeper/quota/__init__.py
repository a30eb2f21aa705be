"""Quotas: token buckets and calendar windows (memory or Redis), their failure modes, the
reconciliation of model-token reservations, and the headers that describe them."""

from gatekeeper.quota.base import (
    BucketState,
    QuotaAdjustment,
    QuotaResult,
    QuotaStore,
)
from gatekeeper.quota.factory import open_quota_store
from gatekeeper.quota.failover import FailoverQuotaStore
from gatekeeper.quota.headers import rate_limit_headers
from gatekeeper.quota.memory import MemoryQuotaStore
from gatekeeper.quota.redis_store import RedisQuotaStore
from gatekeeper.quota.reservation import TokenReservation
from gatekeeper.quota.windows import CalendarWindow, parse_window

__all__ = [
    "BucketState",
    "CalendarWindow",
    "FailoverQuotaStore",
    "MemoryQuotaStore",
    "QuotaAdjustment",
    "QuotaResult",
    "QuotaStore",
    "RedisQuotaStore",
    "TokenReservation",
    "open_quota_store",
    "parse_window",
    "rate_limit_headers",
]
