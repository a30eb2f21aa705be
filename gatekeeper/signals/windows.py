"""Rolling-window counters: sums over the last ``seconds``, kept as ``buckets`` sub-buckets.

A window of one hour with 12 buckets counts what happened in the last 55 to 60 minutes (the
current, partly filled bucket plus 11 full ones): the resolution is one bucket. A bucket is
recycled in place when time moves past it, so an idle counter needs no clean-up to stay right.
``WindowCounts`` (``RollingCounts`` for one window) keeps a running sum, so adding and reading
cost O(metrics) per window (plus, on a read, one comparison per bucket that expired since the
last read).

The state keeps these per subject, hundreds of thousands of them: they are laid out for the
cyclic garbage collector, whose full collections visit every container it tracks and every
item of a list. Counters are ``array('q')`` (one tracked object, items never visited), a
``RollingTally``'s stamps too; its per-bucket tallies are dicts of str to int, which CPython
does not track (their list is visited: 12 items). ``SmallTally``, for the few keys of a
model mix, keeps all its counts in one array.

Late additions (an observation replicated from another gateway a few seconds after it happened)
land in their own bucket while it is still inside the window, and are ignored after.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

#: The largest amount one observation may add to a counter (``Observation.from_wire`` refuses
#: more, the stage's own are capped): counters are 64-bit, and at this bound it takes eight
#: million such additions inside one window to overflow one.
MAX_AMOUNT = 2**40


@functools.lru_cache(maxsize=16)
def _template(windows: int, buckets: int, width: int) -> array[int]:
    block = [-1] * (1 + buckets) + [0] * (buckets * width + width)
    return array("q", block * windows)


@functools.lru_cache(maxsize=16)
def _zeros(n: int) -> array[int]:
    return array("q", [0]) * n


def _blank(windows: int, buckets: int, width: int) -> array[int]:
    """A fresh counters array: every window expired up to -1, no bucket stamped, sums 0."""
    return _template(windows, buckets, width)[:]


class WindowCounts:
    """Sums of a fixed number of metrics over one or more rolling windows, every window's
    buckets and sums in one flat ``array('q')``.

    One array, not lists: the cyclic garbage collector tracks it as one object and never
    visits its items (a list of ints is visited item by item in every full collection), so
    a subject's counters cost the collector almost nothing however many windows it has (see
    docs/performance.md, "The garbage collector's full collections"). Each window's block
    of the array is ``[expired, buckets stamps, buckets * width values, width sums]``:
    ``expired`` is the last bucket index already out of the sums, a stamp the index a
    bucket holds (-1: none). Counters are 64-bit: amounts are bounded where observations
    enter (``MAX_AMOUNT``).
    """

    __slots__ = ("_block", "_data", "_n", "_sizes", "_width")

    def __init__(self, windows: Sequence[float], buckets: int, width: int) -> None:
        self._sizes = tuple(seconds / buckets for seconds in windows)
        self._n = buckets
        self._width = width
        self._block = 1 + buckets + buckets * width + width
        self._data = _blank(len(self._sizes), buckets, width)

    def _expire(self, base: int, oldest: int) -> None:
        """Take the buckets of the window at ``base`` with an index <= ``oldest`` out of its
        sums."""
        data, n = self._data, self._n
        expired = data[base]
        if oldest <= expired:
            return
        if oldest - expired >= n:
            # A long idle spell: look at every bucket once rather than every index passed.
            for pos in range(n):
                if 0 <= data[base + 1 + pos] <= oldest:
                    self._drop(base, pos)
        else:
            for index in range(expired + 1, oldest + 1):
                pos = index % n
                if data[base + 1 + pos] == index:
                    self._drop(base, pos)
        data[base] = oldest

    def _drop(self, base: int, pos: int) -> None:
        data, n, width = self._data, self._n, self._width
        values = base + 1 + n + pos * width
        sums = base + 1 + n + n * width
        for i in range(width):
            data[sums + i] -= data[values + i]
            data[values + i] = 0
        data[base + 1 + pos] = -1

    def _add(self, base: int, index: int, amounts: Sequence[int]) -> None:
        """Add ``amounts`` to bucket ``index`` of the window at ``base``."""
        data, n = self._data, self._n
        if index <= data[base]:
            return  # older than the window: that bucket has been recycled
        if index - n > data[base]:
            self._expire(base, index - n)
        stamp = base + 1 + index % n
        if data[stamp] > index:
            return  # a newer bucket holds the slot: this addition is out of the window
        data[stamp] = index
        width = self._width
        values = base + 1 + n + (index % n) * width
        sums = base + 1 + n + n * width
        for i, amount in enumerate(amounts):
            # Most amounts of an observation are zero (a request is counted once with its
            # flags, once with its tokens): skipping them takes a third off an add.
            if amount:
                data[values + i] += amount
                data[sums + i] += amount

    def add(self, at: float, amounts: Sequence[int]) -> None:
        """Add ``amounts`` (one per metric) at time ``at`` to every window."""
        # ``_add`` for each window, inlined: two to six additions a request.
        data, n, width, block = self._data, self._n, self._width, self._block
        base = 0
        for size in self._sizes:
            index = math.floor(at / size)
            expired = data[base]
            if index > expired:
                if index - n > expired:
                    self._expire(base, index - n)
                pos = index % n
                if data[base + 1 + pos] <= index:
                    data[base + 1 + pos] = index
                    values = base + 1 + n + pos * width
                    sums = base + 1 + n + n * width
                    for i, amount in enumerate(amounts):
                        if amount:
                            data[values + i] += amount
                            data[sums + i] += amount
            base += block

    def window_sums(self, now: float) -> list[array[int]]:
        """Each window's sums over the window ending at ``now`` (copies)."""
        data, n, width, block = self._data, self._n, self._width, self._block
        out = []
        base = 0
        for size in self._sizes:
            oldest = math.floor(now / size) - n
            if oldest > data[base]:
                self._expire(base, oldest)
            start = base + 1 + n + n * width
            out.append(data[start : start + width])
            base += block
        return out

    def idle(self, now: float) -> bool:
        """Whether nothing at all was counted inside any window ending at ``now``."""
        data, n, block = self._data, self._n, self._block
        base = 0
        for size in self._sizes:
            self._expire(base, math.floor(now / size) - n)
            if any(data[base + 1 + pos] >= 0 for pos in range(n)):
                return False
            base += block
        return True

    def merge_counts(self, other: WindowCounts) -> None:
        """Add every bucket of ``other`` (same shape) into this one, window by window."""
        data, n, width, block = other._data, other._n, other._width, other._block
        base = 0
        for size in self._sizes:
            for pos in range(n):
                stamp = data[base + 1 + pos]
                if stamp >= 0:
                    start = base + 1 + n + pos * width
                    amounts = tuple(data[start : start + width])
                    self._add(base, math.floor((stamp + 0.5) * size / size), amounts)
            base += block


class RollingCounts(WindowCounts):
    """Sums of a fixed number of metrics over one rolling window (``WindowCounts`` of one)."""

    __slots__ = ()

    def __init__(self, seconds: float, buckets: int, width: int) -> None:
        super().__init__((seconds,), buckets, width)

    def totals(self, now: float) -> list[int]:
        """Each metric's sum over the window ending at ``now``."""
        return self.window_sums(now)[0].tolist()

    def sums(self, now: float) -> list[int]:
        """``totals`` (kept for callers of the list-based counters; a copy too)."""
        return self.totals(now)

    def merge(self, other: RollingCounts) -> None:
        """Add every bucket of ``other`` (same shape) into this one."""
        self.merge_counts(other)


class _Tally(ABC):
    """What ``RollingTally`` and ``SmallTally`` share: running totals per key over the buckets
    still inside the window (those with an index above ``_expired``), read by ``count``."""

    __slots__ = ("_expired", "_n", "_size", "_totals")

    _expired: int
    _n: int
    _size: float
    _totals: dict[str, int]

    @abstractmethod
    def _expire(self, oldest: int) -> None:
        """Take the buckets with an index <= ``oldest`` out of the totals."""

    def _take_out(self, counts: Iterable[tuple[str, int]]) -> None:
        """Subtract a bucket's ``(key, count)`` pairs from the totals (a key whose total is
        then 0 leaves them)."""
        totals = self._totals
        for key, amount in counts:
            # ``get``: a key added with amount 0 may have left the totals already.
            left = totals.get(key, 0) - amount
            if left:
                totals[key] = left
            else:
                totals.pop(key, None)

    def _oldest(self, now: float) -> int:
        """The index of the newest bucket outside the window ending at ``now``."""
        return math.floor(now / self._size) - self._n

    def count(self, now: float, key: str) -> int:
        """How many times ``key`` was added inside the window ending at ``now``."""
        oldest = math.floor(now / self._size) - self._n  # ``_oldest``, inlined: every request
        if oldest > self._expired:
            self._expire(oldest)
        return self._totals.get(key, 0)


class RollingTally(_Tally):
    """Counts per key (a template hash) over one rolling window.

    Like ``RollingCounts``, it keeps running totals (one dict over every bucket still inside
    the window), so ``count`` is one dict lookup, not one per bucket: a bucket's tally leaves
    the totals once, when time moves past it. Reads are expected at a time that does not go
    backwards (the request path's clock), as for ``RollingCounts``.
    """

    __slots__ = ("_stamps", "_tallies")

    def __init__(self, seconds: float, buckets: int) -> None:
        self._size = seconds / buckets
        self._n = buckets
        self._stamps = array("q", [-1]) * buckets
        self._tallies: list[dict[str, int] | None] = [None] * buckets
        #: Every key's count over the buckets with an index above ``_expired``.
        self._totals: dict[str, int] = {}
        self._expired = -1

    def _subtract(self, tally: dict[str, int]) -> None:
        self._take_out(tally.items())

    def _expire(self, oldest: int) -> None:
        """Take the buckets with an index <= ``oldest`` out of the totals."""
        if oldest <= self._expired:
            return
        expired, stamps, n = self._expired, self._stamps, self._n
        # Only the buckets that left since the last call: an index's bucket can only sit at
        # its position (index % n). After a long idle spell, every position once.
        indexes = range(expired + 1, oldest + 1) if oldest - expired < n else stamps
        for index in indexes:
            pos = index % n
            if expired < stamps[pos] == index <= oldest:
                tally = self._tallies[pos]
                if tally:
                    self._subtract(tally)
        self._expired = oldest

    def _bucket(self, at: float) -> tuple[dict[str, int], int] | None:
        """The tally of the bucket holding ``at`` (a fresh one if its slot held an older
        bucket, which then leaves the window) and its index; ``None`` for a time older than
        the slot's bucket."""
        index = math.floor(at / self._size)
        pos = index % self._n
        stamp = self._stamps[pos]
        if stamp > index:
            return None
        tally = self._tallies[pos]
        if stamp < index or tally is None:
            if tally and stamp > self._expired:
                self._subtract(tally)  # the slot's older bucket leaves the window
            self._stamps[pos] = index
            tally = self._tallies[pos] = {}
        return tally, index

    def add(self, at: float, key: str, amount: int = 1) -> None:
        found = self._bucket(at)
        if found is None:
            return
        tally, index = found
        tally[key] = tally.get(key, 0) + amount
        if index > self._expired:
            totals = self._totals
            totals[key] = totals.get(key, 0) + amount

    def add_keys(self, at: float, first: str | None, second: str | None) -> None:
        """``add(at, first)`` then ``add(at, second)``, each unless ``None``, with the bucket
        found once (a request's template and family, on every observation)."""
        if first is None and second is None:
            return
        found = self._bucket(at)
        if found is None:
            return
        tally, index = found
        totals = self._totals if index > self._expired else None
        for key in (first, second):
            if key is not None:
                tally[key] = tally.get(key, 0) + 1
                if totals is not None:
                    totals[key] = totals.get(key, 0) + 1

    def copy_key(self, source: str, target: str) -> None:
        """Count ``target`` in every bucket as many times as ``source`` (``target`` unseen)."""
        for tally in self._tallies:
            if tally and source in tally:
                tally[target] = tally[source]
        if source in self._totals:
            self._totals[target] = self._totals[source]

    def idle(self, now: float) -> bool:
        oldest = self._oldest(now)
        return all(stamp <= oldest for stamp in self._stamps)

    def compact(self, now: float) -> None:
        """Free the tallies of buckets outside the window ending at ``now``."""
        oldest = self._oldest(now)
        self._expire(oldest)
        for pos, stamp in enumerate(self._stamps):
            if 0 <= stamp <= oldest:
                self._stamps[pos] = -1
                self._tallies[pos] = None

    def merge(self, other: RollingTally) -> None:
        for stamp, tally in zip(other._stamps, other._tallies, strict=True):
            if stamp >= 0 and tally:
                at = (stamp + 0.5) * self._size
                for key, amount in tally.items():
                    self.add(at, key, amount)


class SmallTally(_Tally):
    """``RollingTally`` for a handful of keys (a model mix: the request total and the models
    called), as one table in one ``array('q')``: the buckets' stamps (-1: none), then a row
    of ``buckets`` counts per key (``_rows``: key -> its row's offset, in row order).

    Two tracked objects for the garbage collector (this and the array), whose full
    collections never visit the counts, where ``RollingTally``'s list of bucket dicts is
    visited bucket by bucket (docs/performance.md). The price is per key: a new key is a new
    row, and a bucket leaving or recycled touches every row, so this suits a few keys read
    and added often, not a template tally's many keys each seen once or twice (there, it
    cost twice ``RollingTally``'s time per addition). Rows of keys no bucket counts any more
    are dropped when the table grows past a power of two, and on ``compact``.
    """

    __slots__ = ("_rows", "_table")

    def __init__(self, seconds: float, buckets: int) -> None:
        self._size = seconds / buckets
        self._n = buckets
        #: The stamps, then one row of counts per key.
        self._table = array("q", [-1]) * buckets
        #: key -> the offset of its row in ``_table``.
        self._rows: dict[str, int] = {}
        #: Every key's count over the buckets with an index above ``_expired``.
        self._totals: dict[str, int] = {}
        self._expired = -1

    def _subtract(self, pos: int) -> None:
        """Take bucket ``pos``'s counts out of the totals."""
        n = self._n
        # The bucket's column, every key's count in it (rows are in ``_rows``' order), read
        # by one strided slice: most keys of a window are not in a given bucket.
        column = self._table[n + pos :: n]
        if not any(column):
            return
        rows = zip(self._rows, column)  # noqa: B905 (one count per row)
        self._take_out((key, amount) for key, amount in rows if amount)

    def _clear(self, pos: int) -> None:
        """Empty bucket ``pos`` (its counts, not its stamp)."""
        if self._rows:
            n = self._n
            self._table[n + pos :: n] = array("q", bytes(8 * len(self._rows)))

    def _expire(self, oldest: int) -> None:
        """Take the buckets with an index <= ``oldest`` out of the totals."""
        if oldest <= self._expired:
            return
        if not self._rows:
            # No key: every bucket's column is empty and ``_subtract`` would find nothing. A
            # new subject's model mix is read at once (the model shift of its first request).
            self._expired = oldest
            return
        expired, table, n = self._expired, self._table, self._n
        # Only the buckets that left since the last call: an index's bucket can only sit at
        # its position (index % n). After a long idle spell, every position once.
        indexes = range(expired + 1, oldest + 1) if oldest - expired < n else table[:n]
        for index in indexes:
            pos = index % n
            if expired < table[pos] == index <= oldest:
                self._subtract(pos)
        self._expired = oldest

    def _bucket(self, index: int) -> int:
        """The position of bucket ``index``, recycling its slot if an older bucket holds it;
        -1 when a newer one does (the addition is out of the window)."""
        pos = index % self._n
        table = self._table
        stamp = table[pos]
        if stamp > index:
            return -1
        if stamp < index:
            if stamp > self._expired:
                self._subtract(pos)  # the slot's older bucket leaves the window
            if stamp >= 0:
                self._clear(pos)
            table[pos] = index
        return pos

    def _row(self, key: str) -> int:
        """``key``'s row, a new one (every count 0) if it has none."""
        row = self._rows.get(key)
        if row is None:
            table, n = self._table, self._n
            if len(self._rows) >= 8 and len(self._rows) & (len(self._rows) - 1) == 0:
                self._drop_empty_rows()
                table = self._table
            row = self._rows[key] = len(table)
            table.extend(_zeros(n))
        return row

    def _drop_empty_rows(self) -> None:
        """Rebuild the table without the rows of keys no bucket counts any more."""
        table, n = self._table, self._n
        fresh = table[:n]
        rows: dict[str, int] = {}
        for key, row in self._rows.items():
            counts = table[row : row + n]
            if any(counts):
                rows[key] = len(fresh)
                fresh.extend(counts)
        self._table, self._rows = fresh, rows

    def add(self, at: float, key: str, amount: int = 1) -> None:
        index = math.floor(at / self._size)
        pos = index % self._n
        if self._table[pos] != index:  # not the current bucket: recycle, or out of the window
            pos = self._bucket(index)
            if pos < 0:
                return
        row = self._rows.get(key)
        if row is None:
            row = self._row(key)  # before reading ``_table``: a new row may rebuild it
        self._table[row + pos] += amount
        if index > self._expired:
            totals = self._totals
            totals[key] = totals.get(key, 0) + amount

    def copy_key(self, source: str, target: str) -> None:
        """Count ``target`` in every bucket as many times as ``source`` (``target`` unseen)."""
        if source in self._rows:
            into = self._row(target)
            # A new row may have rebuilt the table, and dropped ``source``'s if it counted
            # nothing any more: then there is nothing to copy.
            row = self._rows.get(source)
            if row is not None:
                table = self._table
                for pos in range(self._n):
                    if table[row + pos]:
                        table[into + pos] = table[row + pos]
        if source in self._totals:
            self._totals[target] = self._totals[source]

    def idle(self, now: float) -> bool:
        oldest = self._oldest(now)
        return all(stamp <= oldest for stamp in self._table[: self._n])

    def compact(self, now: float) -> None:
        """Free the buckets outside the window ending at ``now``, and the rows of keys no
        bucket inside counts."""
        oldest = self._oldest(now)
        self._expire(oldest)
        table = self._table
        for pos in range(self._n):
            if 0 <= table[pos] <= oldest:
                table[pos] = -1
                self._clear(pos)
        self._drop_empty_rows()

    def merge(self, other: SmallTally) -> None:
        table, n = other._table, other._n
        for pos in range(n):
            stamp = table[pos]
            if stamp >= 0:
                at = (stamp + 0.5) * self._size
                for key, row in other._rows.items():
                    amount = table[row + pos]
                    if amount:
                        self.add(at, key, amount)


class PassWindow:
    """What a maintenance pass in progress forgets, for an index pruned in slices (the
    account and behavioural ``ClusterIndex`` and the ``FamilyIndex``): from ``begin_pass``
    to ``end_pass``, an entry last seen before ``_cutoff`` (the window before the pass's
    time), or one of a subject in ``_forget`` seen before ``_pass_now``, is as good as
    forgotten, so requests between slices see what a one-shot pass would have left."""

    window: float
    _cutoff: float = float("-inf")
    _pass_now: float = float("-inf")
    _forget: AbstractSet[str] = frozenset()

    def begin_pass(self, now: float, forget: AbstractSet[str] = frozenset()) -> None:
        """From now on, treat what a pass at ``now`` forgets as forgotten already (the
        state calls it when its pass starts, before this index's slices run)."""
        self._cutoff, self._pass_now, self._forget = now - self.window, now, forget

    def end_pass(self) -> None:
        self._cutoff = self._pass_now = float("-inf")
        self._forget = frozenset()
