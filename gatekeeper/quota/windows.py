"""Calendar windows: "2M tokens a month" resets at 00:00 UTC on the first of the month.

A window quota is a fixed window counter, the strategy of `limits`' ``FixedWindowRateLimiter``,
with one difference: its windows are aligned to the calendar (UTC) instead of starting at the
first hit, so every replica, every subject and every invoice agree on when "this month" began.
Window expressions are `limits`' own granularities, parsed by `limits`: ``"day"``, ``"month"``,
``"2 hours"``, ``"1 year"``. Multiples count from the Unix epoch: ``"2 days"`` windows start on
even days since 1970-01-01, ``"3 months"`` on January, April, July and October.

The same arithmetic runs inside the Redis script (``lua/calendar.lua``), on Redis' clock; this
module is the memory backend's copy and the reference the tests compare the script against.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

import limits

#: Codes shared with ``lua/calendar.lua``.
GRANULARITY_CODES = {"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6}
_FIXED_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}


@dataclass(frozen=True, slots=True)
class CalendarWindow:
    """One window length: ``multiples`` times ``granularity``."""

    granularity: str
    multiples: int

    @property
    def code(self) -> int:
        return GRANULARITY_CODES[self.granularity]

    @property
    def nominal_seconds(self) -> float:
        """The usual length (30-day months, 365-day years), for the RateLimit-Policy header."""
        if self.granularity == "month":
            return 30 * 86_400.0 * self.multiples
        if self.granularity == "year":
            return 365 * 86_400.0 * self.multiples
        return float(_FIXED_SECONDS[self.granularity] * self.multiples)

    def bounds(self, now: float) -> tuple[float, float]:
        """``(start, end)`` in Unix seconds of the window holding ``now``."""
        if self.granularity in _FIXED_SECONDS:
            length = _FIXED_SECONDS[self.granularity] * self.multiples
            start = (int(now) // length) * length
            return float(start), float(start + length)
        moment = datetime.fromtimestamp(int(now), UTC)
        if self.granularity == "month":
            index = (moment.year - 1970) * 12 + moment.month - 1
            first = index - index % self.multiples
            return _month_start(first), _month_start(first + self.multiples)
        year = moment.year - (moment.year - 1970) % self.multiples
        return _month_start((year - 1970) * 12), _month_start((year + self.multiples - 1970) * 12)


def _month_start(index: int) -> float:
    """Unix seconds of 00:00 UTC on the first of the month ``index`` months after 1970-01."""
    year, month = divmod(index, 12)
    return datetime(1970 + year, month + 1, 1, tzinfo=UTC).timestamp()


@functools.lru_cache(maxsize=256)
def parse_window(text: str) -> CalendarWindow:
    """Parse a window (``"month"``, ``"2 days"``) with `limits`; ``ValueError`` if it is not one."""
    try:
        item = limits.parse(f"1/{text.strip()}")
    except ValueError as exc:
        raise ValueError(
            f"invalid quota window {text!r}: expected a `limits` granularity such as "
            "'day', 'month' or '2 hours'"
        ) from exc
    return CalendarWindow(item.GRANULARITY.name, int(item.multiples))
