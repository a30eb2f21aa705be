"""RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers-11) and Retry-After."""

from __future__ import annotations

import math

from gatekeeper.quota.base import BucketState, QuotaResult


def _sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_header(state: BucketState) -> str:
    """``"<name>";q=<capacity>;w=<seconds>`` (``qu`` only for non-request units)."""
    parts = [_sf_string(state.name), f"q={state.capacity}"]
    if state.unit != "requests":
        parts.append(f"qu={_sf_string(state.unit)}")
    if math.isfinite(state.window_seconds) and state.window_seconds >= 1:
        parts.append(f"w={math.ceil(state.window_seconds)}")
    return ";".join(parts)


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
        (b"ratelimit-policy", policy_header(state).encode()),
        (b"ratelimit", state_header(state).encode()),
    ]
    if not result.allowed:
        headers.append((b"retry-after", str(result.retry_after).encode()))
    return headers
