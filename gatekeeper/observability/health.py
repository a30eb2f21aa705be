"""Liveness and readiness: what ``/healthz`` and ``/readyz`` answer.

Liveness says the process answers. Readiness asks each part of the runtime whether it can serve:
the policy (a revision is loaded), the subject store, the quota store, the decision log and,
when one is configured, the GeoIP database. A
part that offers ``health()`` or ``status()`` (sync or async) is asked; what it returns is read
leniently (``None``, a bool, a mapping or an object with ``ok``/``healthy``/``status``), since
the parts are written by different hands. A check that raises or takes longer than the
readiness timeout counts as not ready. Messages pass through ``redact`` so a store URL with a
password never reaches a response.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gatekeeper.observability.logs import redact

if TYPE_CHECKING:
    from gatekeeper.runtime import Gatekeeper

_GOOD_STATES = frozenset({"ok", "up", "ready", "healthy", "pass", "serving"})


def liveness() -> dict[str, Any]:
    """The liveness document: the process is up and its event loop answers."""
    from gatekeeper._version import __version__

    return {"status": "ok", "version": __version__}


async def readiness(
    gk: Gatekeeper, limit_seconds: float, *, degraded_ok: bool = False
) -> tuple[bool, dict[str, Any]]:
    """``(ready, document)``: every part checked concurrently, each within ``limit_seconds``.

    A part that reports itself ``degraded`` (e.g. a quota store serving its quotas'
    ``on_store_error`` modes while Redis is down) counts as ready only with ``degraded_ok``; the
    document's status is then ``degraded`` rather than ``ready``.
    """
    parts: dict[str, tuple[Any, dict[str, Any]]] = {
        "policy": (gk.engine, _policy_base(gk)),
        "subjects": (gk.identity, {}),
        "quotas": (gk.quotas, {}),
        "decision_log": (gk.decision_log, _log_base(gk.decision_log)),
    }
    if gk.geo is not None:
        # degraded while a changed database stands refused (the last good one serves).
        parts["geoip"] = (gk.geo, {})
    if gk.signals is not None and gk.signals.intel is not None:
        # degraded likewise while changed shared-intelligence files stand refused.
        parts["intel"] = (gk.signals.intel, {})
    names = list(parts)
    results = await asyncio.gather(
        *(check_part(part, base, limit_seconds, degraded_ok) for part, base in parts.values())
    )
    checks = dict(zip(names, results, strict=True))
    ready = all(c["ok"] for c in checks.values())
    status = "not_ready"
    if ready:
        status = "degraded" if any(c.get("degraded") for c in checks.values()) else "ready"
    return ready, {"status": status, "checks": checks}


async def check_part(
    part: Any, base: dict[str, Any], limit_seconds: float, degraded_ok: bool = False
) -> dict[str, Any]:
    """Ask one part for its health; ``{"ok": bool, ...detail}``."""
    detail = dict(base)
    detail.setdefault("ok", True)
    probe = getattr(part, "health", None) or getattr(part, "status", None)
    if not callable(probe):
        return detail
    try:
        async with asyncio.timeout(limit_seconds):
            result = probe()
            if inspect.isawaitable(result):
                result = await result
    except TimeoutError:
        return {**detail, "ok": False, "error": f"no answer within {limit_seconds:g} s"}
    except Exception as exc:
        return {**detail, "ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
    return _read_result(result, detail, degraded_ok)


def _read_result(result: Any, detail: dict[str, Any], degraded_ok: bool) -> dict[str, Any]:
    if result is None:
        return detail
    if isinstance(result, bool):
        return {**detail, "ok": detail["ok"] and result}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    elif hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    elif not isinstance(result, Mapping):
        result = {
            name: getattr(result, name)
            for name in ("ok", "healthy", "ready", "status", "error", "detail")
            if hasattr(result, name)
        }
    merged: dict[str, Any] = {**detail, **{str(k): _plain(v) for k, v in result.items()}}
    merged["ok"] = detail["ok"] and _is_ok(result, degraded_ok)
    if _state(result) == "degraded":
        merged["degraded"] = True
    return merged


def _state(result: Mapping[str, Any]) -> str | None:
    status = result.get("status", result.get("state"))
    return status.lower() if isinstance(status, str) else None


def _is_ok(result: Mapping[str, Any], degraded_ok: bool) -> bool:
    for key in ("ok", "healthy", "ready"):
        value = result.get(key)
        if isinstance(value, bool):
            return value
    state = _state(result)
    if state is not None:
        return state in _GOOD_STATES or (degraded_ok and state == "degraded")
    return "error" not in result


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


def _policy_base(gk: Gatekeeper) -> dict[str, Any]:
    try:
        revision = gk.engine.revision
    except Exception as exc:
        return {"ok": False, "error": redact(f"no policy revision: {exc}")}
    return {
        "ok": bool(revision),
        "engine": getattr(gk.engine, "name", None),
        "revision": revision,
    }


def _log_base(decision_log: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"ok": True}
    for attr in ("written", "dropped"):
        value = getattr(decision_log, attr, None)
        if isinstance(value, int):
            detail[attr] = value
    task = getattr(decision_log, "_task", None)
    # A writer task that ended on its own (not cancelled at shutdown) writes nothing more.
    if isinstance(task, asyncio.Task) and task.done() and not task.cancelled():
        detail["ok"] = False
        detail["error"] = "the decision-log writer has stopped"
    return detail
