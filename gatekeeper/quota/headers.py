"""RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers-11) and Retry-After."""

from __future__ import annotations

import functools
import math

from gatekeeper.quota.base import BucketState, QuotaResult


@functools.lru_cache(maxsize=1024)
def _sf_string(value: str) -> str:
    # Cached: quota names and units repeat on every request.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_header(state: BucketState) -> str:
    """``"<name>";q=<capacity>;w=<seconds>`` (``qu`` only for non-request units)."""
    return _policy(state.name, state.capacity, state.unit, state.window_seconds).decode()


@functools.lru_cache(maxsize=1024)
def _policy(name: str, capacity: int, unit: str, window_seconds: float) -> bytes:
    # Cached: it depends on the quota's shape only, and a policy hands out few shapes.
    parts = [_sf_string(name), f"q={capacity}"]
    if unit != "requests":
        parts.append(f"qu={_sf_string(unit)}")
    if math.isfinite(window_seconds) and window_seconds >= 1:
        parts.append(f"w={math.ceil(window_seconds)}")
    return ";".join(parts).encode()


def state_header(state: BucketState) -> str:
    """``"<name>";r=<remaining>;t=<seconds until full>``."""
    parts = [_sf_string(state.name), f"r={math.floor(state.remaining)}"]
    if math.isfinite(state.full_in_seconds):
        parts.append(f"t={math.ceil(state.full_in_seconds)}")
    return ";".join(parts)


def rate_limit_headers(result: QuotaResult) -> list[tuple[bytes, bytes]]:
    """Headers for the most constrained quota, plus ``Retry-After`` on a refusal."""
    state = result.most_constrained
    if state is None:
        return []
    headers = [
        (
            b"ratelimit-policy",
            _policy(state.name, state.capacity, state.unit, state.window_seconds),
        ),
        (b"ratelimit", state_header(state).encode()),
    ]
    if not result.allowed:
        headers.append((b"retry-after", str(result.retry_after).encode()))
    return headers
