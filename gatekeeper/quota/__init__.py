"""Quotas: token buckets and the headers that describe them."""

from gatekeeper.quota.base import BucketState, QuotaResult, QuotaStore
from gatekeeper.quota.headers import rate_limit_headers
from gatekeeper.quota.memory import MemoryQuotaStore

__all__ = ["BucketState", "MemoryQuotaStore", "QuotaResult", "QuotaStore", "rate_limit_headers"]
