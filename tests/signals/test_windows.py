"""Rolling-window counters against a brute-force count of the same events."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.signals import RollingCounts, RollingTally
from gatekeeper.signals.windows import SmallTally, WindowCounts

SECONDS, BUCKETS = 3600.0, 12
SIZE = SECONDS / BUCKETS


def in_window(at: float, now: float) -> bool:
    return math.floor(at / SIZE) > math.floor(now / SIZE) - BUCKETS


def test_counts_leave_the_window_a_bucket_at_a_time() -> None:
    counts = RollingCounts(SECONDS, BUCKETS, 2)
    counts.add(10.0, (1, 100))
    counts.add(400.0, (2, 5))
    assert counts.totals(3599.0) == [3, 105]
    assert counts.totals(3600.0) == [2, 5]  # the first bucket (0-300 s) has left
    assert counts.totals(4200.0) == [0, 0]
    assert counts.idle(4200.0)


def test_a_late_addition_lands_in_its_bucket_or_nowhere() -> None:
    counts = RollingCounts(SECONDS, BUCKETS, 1)
    counts.add(4000.0, (1,))
    counts.add(3990.0, (1,))  # a few seconds late: still inside the window
    counts.add(100.0, (1,))  # an hour late: outside the window, ignored
    assert counts.totals(4000.0) == [2]


def test_merge_adds_bucket_by_bucket() -> None:
    a, b = RollingCounts(SECONDS, BUCKETS, 1), RollingCounts(SECONDS, BUCKETS, 1)
    a.add(10.0, (1,))
    b.add(10.0, (2,))
    b.add(700.0, (4,))
    a.merge(b)
    assert a.totals(800.0) == [7]
    assert a.totals(3700.0) == [4]


events = st.lists(
    st.tuples(st.floats(min_value=0, max_value=4 * SECONDS), st.integers(0, 50)), max_size=60
)


@given(events, st.floats(min_value=0, max_value=SECONDS))
def test_totals_match_brute_force(raw: list[tuple[float, int]], later: float) -> None:
    ordered = sorted(raw)
    counts = RollingCounts(SECONDS, BUCKETS, 1)
    tally = RollingTally(SECONDS, BUCKETS)
    for at, amount in ordered:
        counts.add(at, (amount,))
        tally.add(at, "k", amount)
    now = (ordered[-1][0] if ordered else 0.0) + later
    expected = sum(amount for at, amount in ordered if in_window(at, now))
    assert counts.totals(now) == [expected]
    assert tally.count(now, "k") == expected


counts_operations = st.lists(
    st.tuples(
        st.booleans(),  # add (True) or read
        # How far the clock moves first: often not at all, sometimes past every window.
        st.one_of(st.just(0.0), st.floats(0, 2 * SIZE), st.floats(0, 3 * SECONDS)),
        st.one_of(st.just(0.0), st.floats(0, 1.5 * SECONDS)),  # how late an addition is
        st.integers(0, 50),
    ),
    max_size=80,
)


@settings(max_examples=300)
@given(counts_operations)
def test_every_window_matches_brute_force_between_reads(
    ops: list[tuple[bool, float, float, int]],
) -> None:
    # Reads between additions expire buckets as time passes, some after an idle spell longer
    # than a window (every bucket left at once), some after a few buckets.
    windows = (SECONDS / 6, SECONDS)
    counts = WindowCounts(windows, BUCKETS, 2)
    added: list[tuple[float, int]] = []
    now = 2 * SECONDS
    for add, advance, late, amount in ops:
        now += advance
        if add:
            counts.add(now - late, (amount, 1))
            added.append((now - late, amount))
            continue
        for seconds, sums in zip(windows, counts.window_sums(now), strict=True):
            size = seconds / BUCKETS
            inside = [
                amount
                for at, amount in added
                if math.floor(at / size) > math.floor(now / size) - BUCKETS
            ]
            assert sums.tolist() == [sum(inside), len(inside)], (seconds, now)


def test_tally_counts_keys_apart_and_compacts() -> None:
    tally = RollingTally(SECONDS, BUCKETS)
    tally.add(10.0, "a")
    tally.add(20.0, "a")
    tally.add(30.0, "b")
    assert (tally.count(40.0, "a"), tally.count(40.0, "b"), tally.count(40.0, "c")) == (2, 1, 0)
    tally.compact(SECONDS + 400)
    assert tally.idle(SECONDS + 400)
    assert tally.count(SECONDS + 400, "a") == 0


class NaiveTally:
    """The reference: buckets recycled in place, a count summing every bucket in the window."""

    def __init__(self) -> None:
        self.stamps = [-1] * BUCKETS
        self.tallies: list[dict[str, int]] = [{} for _ in range(BUCKETS)]

    def add(self, at: float, key: str, amount: int) -> None:
        index = math.floor(at / SIZE)
        pos = index % BUCKETS
        if self.stamps[pos] > index:
            return
        if self.stamps[pos] < index:
            self.stamps[pos], self.tallies[pos] = index, {}
        self.tallies[pos][key] = self.tallies[pos].get(key, 0) + amount

    def count(self, now: float, key: str) -> int:
        oldest = math.floor(now / SIZE) - BUCKETS
        return sum(
            tally.get(key, 0)
            for stamp, tally in zip(self.stamps, self.tallies, strict=True)
            if stamp > oldest
        )

    def compact(self, now: float) -> None:
        oldest = math.floor(now / SIZE) - BUCKETS
        for pos, stamp in enumerate(self.stamps):
            if 0 <= stamp <= oldest:
                self.stamps[pos], self.tallies[pos] = -1, {}


operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "count", "compact"]),
        # How far the clock moves first: often not at all, sometimes past the whole window.
        st.one_of(st.just(0.0), st.floats(0, 2 * SIZE), st.floats(0, 2 * SECONDS)),
        # How late an addition is: most on time, some late, some beyond the window.
        st.one_of(st.just(0.0), st.floats(0, 1.5 * SECONDS)),
        st.sampled_from("abc"),
        st.integers(0, 3),
    ),
    max_size=80,
)


@pytest.mark.parametrize("kind", [RollingTally, SmallTally])
@settings(max_examples=400)
@given(operations)
def test_tally_running_totals_match_the_naive_sum(
    kind: type[RollingTally | SmallTally], ops: list[tuple[str, float, float, str, int]]
) -> None:
    # The clock never goes back; additions may be late (replicated), reads are at the clock.
    # SmallTally (the model mix's, one array) must count what RollingTally counts.
    tally, naive = kind(SECONDS, BUCKETS), NaiveTally()
    now = 2 * SECONDS
    for op, advance, late, key, amount in ops:
        now += advance
        if op == "add":
            tally.add(now - late, key, amount)
            naive.add(now - late, key, amount)
            continue
        if op == "compact":
            tally.compact(now)
            naive.compact(now)
        for k in "abcd":
            assert tally.count(now, k) == naive.count(now, k), (op, k, now)


@settings(max_examples=300)
@given(operations, st.lists(st.sampled_from(["t", "f", None]), min_size=2, max_size=2))
def test_add_keys_is_two_additions(
    ops: list[tuple[str, float, float, str, int]], pair: list[str | None]
) -> None:
    """``RollingTally.add_keys`` (a request's template and family at once) leaves the tally
    as ``add`` of each key in turn would, late and recycled buckets included."""
    fast, slow = RollingTally(SECONDS, BUCKETS), RollingTally(SECONDS, BUCKETS)
    now = 2 * SECONDS
    first, second = pair
    for op, advance, late, key, amount in ops:
        now += advance
        if op == "add":
            at = now - late
            if amount % 2:
                fast.add_keys(at, first, second)
                for k in (first, second):
                    if k is not None:
                        slow.add(at, k)
            else:
                fast.add(at, key, amount)
                slow.add(at, key, amount)
        elif op == "compact":
            fast.compact(now)
            slow.compact(now)
        for k in ("t", "f", *"abc"):
            assert fast.count(now, k) == slow.count(now, k)
        assert fast._stamps == slow._stamps
        assert fast._tallies == slow._tallies
        assert fast._totals == slow._totals
