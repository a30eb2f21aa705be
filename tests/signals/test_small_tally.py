"""``SmallTally`` (the model mix's tally, one array) counts what ``RollingTally`` counts (and
what a naive tally counts: ``tests/signals/test_windows.py``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.signals.windows import RollingTally, SmallTally
from tests.signals.test_windows import BUCKETS, SECONDS, SIZE

#: Many keys: rows are dropped from the table when it grows (at 8, 16, ... rows).
keyed = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(0, 2 * SIZE), st.floats(0, SECONDS)),
        st.sampled_from([f"k{i}" for i in range(20)]),
        st.integers(1, 3),
        st.booleans(),
    ),
    max_size=120,
)


@settings(max_examples=200)
@given(keyed, st.sampled_from([f"k{i}" for i in range(20)]))
def test_small_tally_agrees_with_rolling_tally_on_merge_and_copy_key(
    ops: list[tuple[float, str, int, bool]], source: str
) -> None:
    small, rolling = SmallTally(SECONDS, BUCKETS), RollingTally(SECONDS, BUCKETS)
    now = 2 * SECONDS
    for advance, key, amount, read in ops:
        now += advance
        small.add(now, key, amount)
        rolling.add(now, key, amount)
        if read:
            assert small.count(now, key) == rolling.count(now, key)
    small.copy_key(source, "copy")
    rolling.copy_key(source, "copy")
    into_small, into_rolling = SmallTally(SECONDS, BUCKETS), RollingTally(SECONDS, BUCKETS)
    into_small.add(now - SIZE, "k0")
    into_rolling.add(now - SIZE, "k0")
    into_small.merge(small)
    into_rolling.merge(rolling)
    for k in [f"k{i}" for i in range(20)] + ["copy"]:
        assert small.count(now, k) == rolling.count(now, k), k
        assert into_small.count(now, k) == into_rolling.count(now, k), k
    assert small.idle(now) == rolling.idle(now)
    assert small.idle(now + SECONDS) and rolling.idle(now + SECONDS)


def test_copy_key_of_a_key_that_counts_nothing_any_more_copies_nothing() -> None:
    """Eight rows, the source's bucket recycled: the target's new row rebuilds the table
    without the source's (empty) row. Found by the test above; it raised KeyError, on the
    request path (the model shift copies a subject's first model when a second one comes)."""
    tally = SmallTally(SECONDS, BUCKETS)
    for i in range(8):
        tally.add(0.0, f"k{i}")
    tally.add(SECONDS, "k1")  # bucket 0 recycled: k0 counts nothing any more
    tally.copy_key("k0", "copy")
    assert tally.count(SECONDS, "copy") == 0
    assert tally.count(SECONDS, "k1") == 1
