"""Model-token quotas: reserve the estimate before the app runs, settle from the real usage after.

The policy sets a token quota's ``cost`` to the request's estimate (prompt estimate plus
``max_tokens`` or a default). ``acquire`` debits that estimate; after the response,
``TokenReservation.settle`` computes what the request really used and applies the difference
with ``adjust``: a refund (never above capacity) or an extra charge (which may leave a bucket
in debt, so the subject's next requests wait until it refills). A Redis store writes it with
the other settlements of its ``quota.settle_interval`` (docs/quotas.md, "Deferred settlement"),
so settling costs no round trip of its own.

What "really used" means, in order:

1. The response finished and carried a usage object (JSON ``usage``, or the final SSE usage
   event of each dialect): the provider's count. ``total_tokens`` where the dialect has it,
   else input + output (+ Anthropic's cache reads and writes).
2. The response finished without usage and with an error status, or never started: nothing
   was generated, everything is refunded.
3. Otherwise (the client cut the stream, or the provider reported no usage): what was sent.
   Input is the reported input count or the prompt estimate; output is estimated from the
   bytes that reached the client (about 4 per token) plus the reasoning tokens shaping removed
   (the model generated them). This estimate is capped at the reservation.

``reasoning_tokens`` quotas are settled with the reasoning tokens exposed to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from gatekeeper.contract import QuotaSpec
from gatekeeper.errors import QuotaStoreError
from gatekeeper.quota.base import BucketState, QuotaAdjustment, QuotaResult, QuotaStore

if TYPE_CHECKING:
    from gatekeeper.reasoning.shaper import ReasoningStats

log = logging.getLogger("gatekeeper.quota")

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

TOKEN_UNITS = frozenset({"tokens", "reasoning_tokens"})


def _tokens(chars_or_bytes: int) -> int:
    # The shapers' estimate (reasoning.shaper.estimate_tokens, about four characters per token),
    # kept in step with it.
    return (chars_or_bytes + 3) // 4


def _int(usage: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def usage_input_tokens(usage: dict[str, Any]) -> int | None:
    """Input tokens of a usage object of any dialect (cache reads and writes included)."""
    base = _int(usage, "prompt_tokens", "input_tokens")
    cache = [
        _int(usage, "cache_creation_input_tokens") or 0,
        _int(usage, "cache_read_input_tokens") or 0,
    ]
    return None if base is None else base + sum(cache)


def usage_total_tokens(usage: dict[str, Any]) -> int | None:
    """Total tokens of a usage object (chat, responses or Anthropic messages)."""
    total = _int(usage, "total_tokens")
    if total is not None:
        return total
    output = _int(usage, "completion_tokens", "output_tokens")
    prompt = usage_input_tokens(usage)
    if output is None and prompt is None:
        return None
    return (prompt or 0) + (output or 0)


class TokenReservation:
    """The token quotas one request paid for in advance, and what its response sent."""

    def __init__(
        self,
        store: QuotaStore,
        charged: list[tuple[QuotaSpec, BucketState]],
        *,
        prompt_tokens: int,
    ) -> None:
        self.store = store
        self.charged = charged
        self.prompt_tokens = prompt_tokens
        self.status: int | None = None
        self.body_bytes = 0
        self.complete = False

    @classmethod
    def open(
        cls, store: QuotaStore, specs: list[QuotaSpec], result: QuotaResult, *, prompt_chars: int
    ) -> TokenReservation | None:
        """A reservation for the token quotas ``result`` debited, or None if there are none."""
        by_key = {(s.name, s.key): s for s in result.states}
        charged = [
            (spec, by_key[(spec.name, spec.key)])
            for spec in specs
            if spec.unit in TOKEN_UNITS and (spec.name, spec.key) in by_key
        ]
        if not charged:
            return None
        return cls(store, charged, prompt_tokens=_tokens(prompt_chars))

    def meter(self, send: Send) -> Send:
        """Wrap ``send`` to see what goes to the client: status, body bytes, the end.

        Counted as each message is handed on, before it is written: a durable route settles
        while its final chunk waits for the decision log, and that chunk is part of what the
        response delivered.
        """

        async def metered(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                self.status = int(message["status"])
            elif kind == "http.response.body":
                self.body_bytes += len(message.get("body", b""))
                if not message.get("more_body", False):
                    self.complete = True
            await send(message)

        return metered

    def used_tokens(self, stats: ReasoningStats | None, reserved: int) -> tuple[int, str]:
        """Total tokens the request used, and how that was known (usage, error, estimate)."""
        usage = stats.usage if stats is not None else None
        if self.complete and usage is not None:
            total = usage_total_tokens(usage)
            if total is not None:
                return total, "usage"
        failed = self.status is None or (self.status >= 400 and usage is None)
        if failed and (self.complete or self.status is None):
            return 0, "error"
        prompt = usage_input_tokens(usage) if usage is not None else None
        output = _tokens(self.body_bytes) + (stats.removed_tokens if stats is not None else 0)
        return min(reserved, (prompt or self.prompt_tokens) + output), "estimate"

    async def settle(self, stats: ReasoningStats | None) -> dict[tuple[str, str], dict[str, Any]]:
        """Refund or charge the difference between each reservation and the real use.

        Returns, by ``(name, key)`` of each token quota, what the decision event records of it:
        ``reserved``, ``used`` and ``measured_by``. Never raises: the response is already out.
        """
        adjustments = []
        notes: dict[tuple[str, str], dict[str, Any]] = {}
        for spec, state in self.charged:
            if spec.unit == "reasoning_tokens":
                used = stats.exposed_tokens if stats is not None else 0
                how = "usage" if stats is not None and stats.usage is not None else "estimate"
            else:
                used, how = self.used_tokens(stats, spec.cost)
            notes[(spec.name, spec.key)] = {
                "reserved": spec.cost,
                "used": used,
                "measured_by": how,
            }
            adjustments.append(
                QuotaAdjustment(spec, used - spec.cost, state.window_start, state.source)
            )
        try:
            await self.store.adjust(adjustments)
        except QuotaStoreError as exc:
            log.warning("token quotas not reconciled: %s", exc)
        return notes
