"""Calendar windows: the Python arithmetic against the calendar, and the Lua copy against it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.contract import QuotaSpec
from gatekeeper.quota.redis_store import LuaScript
from gatekeeper.quota.windows import parse_window

WINDOWS = ["second", "minute", "5 minutes", "hour", "day", "2 days", "month", "3 months",
           "year", "2 years"]  # fmt: skip

# 1970 .. 2200, plus the instants around month ends that matter most.
instants = st.integers(min_value=0, max_value=7_258_118_400)


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


@pytest.mark.parametrize(
    ("text", "granularity", "multiples"),
    [("month", "month", 1), ("2 days", "day", 2), ("1 hour", "hour", 1), ("year", "year", 1)],
)
def test_windows_are_parsed_by_limits(text: str, granularity: str, multiples: int) -> None:
    window = parse_window(text)
    assert (window.granularity, window.multiples) == (granularity, multiples)


@pytest.mark.parametrize("text", ["fortnight", "", "month/2", "-1 day"])
def test_a_decision_with_an_unknown_window_is_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        QuotaSpec(name="q", key="k", kind="window", window=text, capacity=1)


@settings(max_examples=300, deadline=None)
@given(now=instants, text=st.sampled_from(WINDOWS))
def test_a_window_holds_now_starts_on_a_calendar_boundary_and_tiles(now: int, text: str) -> None:
    window = parse_window(text)
    start, end = window.bounds(now)
    assert start <= now < end
    first = datetime.fromtimestamp(start, UTC)
    last = datetime.fromtimestamp(end, UTC)
    if window.granularity == "month":
        assert (first.day, first.hour, first.minute, first.second) == (1, 0, 0, 0)
        assert last == add_months(first, window.multiples)
    elif window.granularity == "year":
        assert (first.month, first.day, first.hour) == (1, 1, 0)
        assert last == first.replace(year=first.year + window.multiples)
    else:
        assert end - start == window.nominal_seconds
    # The next window starts where this one ends.
    assert window.bounds(end)[0] == end


@pytest.fixture(scope="module")
def boundaries() -> list[int]:
    """Instants on and around month and year ends, leap days included."""
    out = []
    for year in (1970, 1999, 2000, 2024, 2026, 2100):
        for month in range(1, 13):
            edge = int(datetime(year, month, 1, tzinfo=UTC).timestamp())
            out += [edge - 1, edge, edge + 1]
        out.append(int(datetime(year, 2, 28, 23, 59, 59, tzinfo=UTC).timestamp()))
    return out


HARNESS = """
local out = {}
for i = 1, #ARGV, 3 do
  local s, e = window_bounds(tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]))
  out[#out + 1] = whole(s)
  out[#out + 1] = whole(e)
end
return out
"""


@settings(max_examples=20, deadline=None)
@given(extra=st.lists(instants, min_size=1, max_size=50))
async def test_the_lua_calendar_agrees_with_python(
    redis_url: str, boundaries: list[int], extra: list[int]
) -> None:
    script = LuaScript.load("calendar.lua")
    source = script.source + HARNESS
    client = aioredis.Redis.from_url(redis_url)
    try:
        for text in WINDOWS:
            window = parse_window(text)
            points = boundaries + extra
            args = [str(v) for p in points for v in (p, window.code, window.multiples)]
            reply = await client.eval(source, 0, *args)
            got = [(int(reply[i]), int(reply[i + 1])) for i in range(0, len(reply), 2)]
            assert got == [tuple(int(x) for x in window.bounds(p)) for p in points], text
    finally:
        await client.aclose()
