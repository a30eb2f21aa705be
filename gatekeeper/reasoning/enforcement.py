"""Everything the middleware does about reasoning for one request, in one place.

- **Budget.** ``reasoning.budget_quota`` names one of the decision's quotas (unit
  ``reasoning_tokens``) that meters the reasoning tokens the subject is shown across requests.
  It never refuses a request: it is checked at no cost with the request's other quotas (one store
  round trip), and once it is spent (less than one token left) the mode degrades to ``drop``.
  While it lasts, ``truncate`` and ``summary`` show at most what is left. After the response,
  the reasoning tokens actually exposed are charged (by ``TokenReservation.settle``, which
  settles ``reasoning_tokens`` quotas with ``stats.exposed_tokens``; reserved 0, so the whole
  exposure is charged). A budget quota that is not among the decision's quotas, or whose store
  is down while its ``on_store_error`` is ``deny``, degrades to ``drop`` too: reasoning exposure
  fails closed, the request itself goes on.
- **Continuity.** The request's history gets back the reasoning kept from earlier responses to
  the same subject (``Continuity.restore``); the response's removed reasoning is kept before its
  last bytes go out (``save``, the responder's ``before_end``).
- **Shaping.** Every model request gets a shaper, ``full`` included (it changes no byte but
  reads the usage the quota stage settles with).
- **The decision log** gets the mode asked for and the mode applied, the token counts, the
  budget and continuity outcome (``record``).

What it needs from the runtime is a ``ReasoningSetup``, built once by the runtime
(``Gatekeeper.reasoning_setup``) and shared by every request.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gatekeeper.contract import QuotaSpec, ReasoningPolicy
from gatekeeper.quota import QuotaResult
from gatekeeper.reasoning.continuity import Continuity, ContinuityVault, ReasoningVault
from gatekeeper.reasoning.shaper import ResponseShaper
from gatekeeper.reasoning.summarize import Summariser
from gatekeeper.reasoning.trace import ShapingOptions

if TYPE_CHECKING:
    from gatekeeper.dialects.base import Dialect
    from gatekeeper.reasoning.responder import Responder
    from gatekeeper.settings import ShapingSettings

log = logging.getLogger("gatekeeper.shaping")


@dataclass(frozen=True, slots=True)
class ReasoningSetup:
    """The parts and settings every request's ``ReasoningEnforcement`` reads, built once."""

    #: What shapers get beyond the decision's policy (the summariser among them).
    options: ShapingOptions
    #: Where continuity keeps reasoning; None when ``shaping.continuity`` is off.
    continuity: ContinuityVault | None

    @classmethod
    def of(
        cls,
        shaping: ShapingSettings,
        *,
        summariser: Summariser,
        vault: ReasoningVault | None,
        key_prefix: str,
    ) -> ReasoningSetup:
        options = ShapingOptions(
            summariser=summariser,
            summary_tokens=shaping.summary_tokens,
            truncate_tokens=shaping.truncate_tokens,
            keep=vault is not None,
            buffer_chars=shaping.buffer_chars,
        )
        if vault is None:
            return cls(options, None)
        kept = ContinuityVault(
            vault,
            prefix=key_prefix,
            ttl=shaping.continuity_ttl_seconds,
            timeout=shaping.continuity_timeout,
        )
        return cls(options, kept)


class ReasoningEnforcement:
    """The reasoning side of one request: budget, continuity, shaper, log record."""

    def __init__(
        self,
        setup: ReasoningSetup,
        dialect: Dialect | None,
        subject_id: str,
        policy: ReasoningPolicy,
    ) -> None:
        self.dialect = dialect
        self.requested = policy
        #: The policy actually enforced (degraded or capped by the budget).
        self.policy = policy
        self.options = setup.options
        self.continuity: Continuity | None = None
        if setup.continuity is not None and dialect is not None:
            self.continuity = Continuity(setup.continuity, subject_id)
        self.budget: dict[str, Any] | None = None
        self._budget_spec: QuotaSpec | None = None
        self.shaper: ResponseShaper | None = None

    # -- budget ---------------------------------------------------------------------------

    def quotas(self, specs: list[QuotaSpec]) -> list[QuotaSpec]:
        """The quotas to acquire: the budget quota at no cost, never refusing the request."""
        name = self.requested.budget_quota
        if name is None:
            return specs
        out: list[QuotaSpec] = []
        for spec in specs:
            if spec.name == name and self._budget_spec is None:
                # A store outage on a "deny" budget degrades the mode instead of refusing.
                mode = "allow" if spec.on_store_error == "deny" else spec.on_store_error
                spec = spec.with_valid(cost=0, on_store_error=mode)
                self._budget_spec = spec
            out.append(spec)
        return out

    def apply_budget(self, result: QuotaResult | None, original: list[QuotaSpec]) -> None:
        """Degrade or cap the mode from the budget quota's state in ``result``."""
        name = self.requested.budget_quota
        if name is None:
            return
        self.budget = {"quota": name}
        if self.requested.mode == "drop":
            return  # nothing to degrade, nothing will be charged
        spec = self._budget_spec
        if spec is None:
            log.warning("reasoning.budget_quota %r is not among the decision's quotas", name)
            self._degrade("budget quota not among the decision's quotas")
            return
        if result is None:
            return
        state = next((s for s in result.states if s.name == name and s.key == spec.key), None)
        if state is None:
            if name in result.unchecked:
                declared = next((q for q in original if q.name == name), spec)
                if declared.on_store_error == "deny":
                    self._degrade("quota store unavailable")
                else:
                    self.budget["unchecked"] = True
            return
        self.budget["remaining"] = round(state.remaining, 3)
        if state.remaining < 1:
            self._degrade("budget spent")
            return
        if self.requested.mode in ("truncate", "summary"):
            default = (
                self.options.summary_tokens
                if self.requested.mode == "summary"
                else self.options.truncate_tokens
            )
            asked = self.requested.max_tokens if self.requested.max_tokens is not None else default
            if int(state.remaining) < asked:
                self.policy = self.policy.model_copy(update={"max_tokens": int(state.remaining)})
                self.budget["capped_to"] = int(state.remaining)

    def _degrade(self, why: str) -> None:
        assert self.budget is not None
        self.budget["degraded"] = why
        self.policy = self.policy.model_copy(update={"mode": "drop"})

    # -- continuity -----------------------------------------------------------------------

    async def restore(self, scope: MutableMapping[str, Any], body: bytes) -> bytes:
        """``body`` with the subject's kept reasoning restored into its history.

        When the body changes, ``scope["headers"]`` gets the new ``Content-Length`` (in place:
        the app, e.g. the reverse proxy, forwards these headers).
        """
        if self.continuity is None or self.dialect is None or not body:
            return body
        restored = await self.continuity.restore(self.dialect, body)
        if restored is not body:
            length = str(len(restored)).encode("ascii")
            headers: list[tuple[bytes, bytes]] = scope["headers"]
            scope["headers"] = [
                (k, length if k.lower() == b"content-length" else v) for k, v in headers
            ]
        return restored

    async def save(self) -> None:
        """Keep what the shaper removed (the responder's ``before_end`` hook)."""
        if self.continuity is not None and self.shaper is not None and self.shaper.kept:
            await self.continuity.save(self.shaper.kept)

    # -- shaping and the log --------------------------------------------------------------

    def new_shaper(self) -> ResponseShaper | None:
        """The response's shaper (``None`` for requests of no dialect)."""
        if self.dialect is None:
            return None
        self.shaper = self.dialect.new_shaper(self.policy, self.options)
        self.shaper.stats.mode = self.requested.mode
        return self.shaper

    def record(self, responder: Responder) -> dict[str, Any]:
        """The decision log's ``enforcement.reasoning`` for this request."""
        stats = responder.stats
        record: dict[str, Any] = {
            "mode": self.requested.mode,
            "applied_mode": self.policy.mode,
            "seen_tokens": stats.seen_tokens if stats else None,
            "exposed_tokens": stats.exposed_tokens if stats else None,
            "removed_tokens": stats.removed_tokens if stats else 0,
            "removed_items": stats.removed_items if stats else 0,
            "aborted": responder.aborted,
        }
        if self.policy.max_tokens is not None and self.policy.mode in ("truncate", "summary"):
            record["max_tokens"] = self.policy.max_tokens
        if self.budget is not None:
            record["budget"] = self.budget
        if self.continuity is not None:
            record["continuity"] = {
                "restored": self.continuity.restored,
                "kept": self.continuity.kept,
                "unkept": stats.unkept_items if stats else 0,
                "errors": self.continuity.errors,
            }
        return record
