"""Liveness and readiness: what ``/healthz`` and ``/readyz`` answer.

Liveness says the process answers. Readiness asks each part of the runtime whether it can serve:
the policy (a revision is loaded), the subject store, the quota store, the decision log and,
when one is configured, the GeoIP database. Every part implements the ``Health`` protocol
(``gatekeeper/health.py``): readiness awaits its ``health()`` and shows ``{"ok": …,
**detail}``, with ``"degraded": true`` when the part serves in a fallback mode. A check that
raises or takes longer than the readiness timeout counts as not ready. Strings pass through
``redact`` so a store URL with a password never reaches a response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gatekeeper.health import Health, PartHealth
from gatekeeper.observability.logs import redact


def liveness() -> dict[str, Any]:
    """The liveness document: the process is up and its event loop answers."""
    from gatekeeper._version import __version__

    return {"status": "ok", "version": __version__}


async def readiness(
    parts: Mapping[str, Health], limit_seconds: float, *, degraded_ok: bool = False
) -> tuple[bool, dict[str, Any]]:
    """``(ready, document)``: every part checked concurrently, each within ``limit_seconds``.

    A part that reports itself ``degraded`` (e.g. a quota store serving its quotas'
    ``on_store_error`` modes while Redis is down) counts as ready only with ``degraded_ok``; the
    document's status is then ``degraded`` rather than ``ready``.
    """
    results = await asyncio.gather(
        *(check_part(part, limit_seconds, degraded_ok) for part in parts.values())
    )
    checks = dict(zip(parts, results, strict=True))
    ready = all(c["ok"] for c in checks.values())
    status = "not_ready"
    if ready:
        status = "degraded" if any(c.get("degraded") for c in checks.values()) else "ready"
    return ready, {"status": status, "checks": checks}


async def check_part(
    part: Health, limit_seconds: float, degraded_ok: bool = False
) -> dict[str, Any]:
    """Ask one part for its health: ``{"ok": bool, **detail}`` (+ ``"degraded": true``)."""
    try:
        async with asyncio.timeout(limit_seconds):
            health = await part.health()
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {limit_seconds:g} s"}
    except Exception as exc:
        return {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
    return check_document(health, degraded_ok)


def check_document(health: PartHealth, degraded_ok: bool = False) -> dict[str, Any]:
    """What ``/readyz`` shows for one part's answer."""
    document: dict[str, Any] = {"ok": health.ok and (degraded_ok or not health.degraded)}
    for key, value in health.detail.items():
        if key != "ok":
            document[str(key)] = _plain(value)
    if health.degraded:
        document["degraded"] = True
    return document


def _plain(value: Any) -> Any:
    """A JSON-friendly copy; strings are redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return redact(str(value))
