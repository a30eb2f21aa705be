"""The ``Health`` protocol: how every part of the runtime says whether it can serve.

Each part that ``/readyz`` asks (the policy engines, the identity methods and their subject
stores, the quota stores, the decision log, the GeoIP database) and the parts they are built
from implement ``async def health(self) -> PartHealth``. Readiness
(``observability/health.py``) calls that and nothing else: it shows ``{"ok": …, **detail}``
for the part, adds ``"degraded": true`` when the part says so, and decides from ``ok`` and
``degraded`` alone.

This module imports nothing but the standard library, so any part can implement the protocol
without importing observability (or anything that imports the middleware).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class PartHealth:
    """One part's answer to a readiness check.

    - ``ok``: the part can serve requests (possibly in a fallback mode).
    - ``degraded``: it serves in a fallback mode (Redis down and quotas on their
      ``on_store_error`` modes, a refused reload with the last good file serving, a JWKS that
      cannot be fetched): ready only with ``observability.ready_when_degraded``.
    - ``detail``: what the readiness document shows for the part besides ``ok`` and
      ``degraded``, in the order it shows it (the part's own fields: ``status``/``state``,
      addresses, counts, errors). Strings are redacted by readiness before they are shown.
    """

    ok: bool
    degraded: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Health(Protocol):
    """A part that can say whether it can serve (see ``PartHealth``).

    ``health`` must not raise for a failure of what the part depends on (it says ``ok=False``
    or ``degraded=True`` and why); readiness still counts a raise, or no answer within
    ``observability.readiness_timeout_seconds``, as not ready.
    """

    async def health(self) -> PartHealth: ...


#: What a part that depends on nothing reports.
HEALTHY = PartHealth(ok=True)

__all__ = ["HEALTHY", "Health", "PartHealth"]
