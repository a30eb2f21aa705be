"""Prompt families: near-duplicate prompts from one generator, across accounts and rewordings.

A template hash (``skeleton.template_hash``) matches prompts that differ only in the values a
generator fills in; a campaign that paraphrases, reorders or rotates templates gets a new hash
for every prompt. A *family* is looser: prompts whose normalised token sets are near (Jaccard)
fall into one family, found with a MinHash sketch and locality-sensitive hashing (LSH):

- **normalising**: the skeleton (numbers, names, quoted spans, URLs abstracted; lower case),
  then NFKC (full-width forms, compatibility characters) and every script's decimal digits as
  ASCII ones;
- **shingles**: the words and word pairs of that text, or, for scripts written without spaces
  (Chinese, Japanese, Thai), character trigrams; each hashed once (CRC-32, the same on every
  gateway);
- **sketch**: one-permutation MinHash: each shingle hash falls in one of ``BINS`` bins by its
  low bits, a bin keeps its smallest hash, and an empty bin borrows its neighbour's (rotation
  densification), so the sketch costs one pass over the shingles;
- **LSH**: ``BANDS`` bands of ``ROWS`` bins each; two prompts with Jaccard similarity J share a
  band with probability ``1 - (1 - J^ROWS)^BANDS`` (J = 0.5: 0.9; J = 0.2: 0.3; J = 0.05: 0.02).

``FamilyIndex.assign`` gives a prompt the family holding most of its band keys in the main
window, when that is at least ``MIN_SHARED_BANDS`` of them, or else a new family named after
its first unseen band; its unseen bands join that family (leader clustering: incremental,
stable ids, O(bands) per prompt). Two bands, not one: short prompts share a band through a
common phrase alone, and one such band chained a campaign's template into the family of
hundreds of honest senders. For every family the index
keeps who sent its prompts in the window, counted by account-age band, so a family spread over
many new accounts is a fact the policy can read (``input.signals.family``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence, Set
from itertools import pairwise
from typing import Any

from gatekeeper.input_document import family_document
from gatekeeper.signals.windows import PassWindow

BINS = 16
ROWS = 2
BANDS = BINS // ROWS
#: A prompt joins a family when at least this many of its bands (all of them, for a prompt with
#: fewer) are the family's: one shared band is often only a common phrase ("explain step by
#: step"), whose words hold the smallest hashes of two bins in many unrelated prompts.
MIN_SHARED_BANDS = 2
_EMPTY = 1 << 32

_TOKEN = re.compile(r"<\w+>|\w+")


def _digit_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for start in (0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0xFF10):
        for i in range(10):
            table[start + i] = str(i)
    return table


_DIGITS = _digit_table()


def normalise(skeleton: str) -> str:
    """NFKC, and other scripts' digits as ASCII (the skeleton already did the rest)."""
    if skeleton.isascii():
        return skeleton
    return unicodedata.normalize("NFKC", skeleton).translate(_DIGITS)


def shingles(text: str) -> set[int]:
    """Hashes of the words and word pairs of ``text`` (character trigrams without spaces)."""
    tokens = _TOKEN.findall(text)
    out: set[int] = set()
    if not tokens:
        return out
    if len(tokens) * 8 < len(text) and not text.isascii():
        # Written without spaces: character trigrams of the text.
        squeezed = "".join(text.split())
        for i in range(max(1, len(squeezed) - 2)):
            out.add(zlib.crc32(squeezed[i : i + 3].encode()))
        return out
    crc = zlib.crc32
    hashes = [crc(token.encode()) for token in tokens]
    out.update(hashes)
    # Word pairs: the two words' hashes combined (no second pass over bytes).
    out.update([(a * 0x9E3779B1 ^ b) & 0xFFFFFFFF for a, b in pairwise(hashes)])
    return out


def sketch(hashes: set[int]) -> list[int]:
    """One-permutation MinHash of ``hashes`` over ``BINS`` bins, densified."""
    mins = [_EMPTY] * BINS
    mask = BINS - 1
    for h in hashes:
        # Mix the bits so the bin and the value are not both the CRC's low bits.
        mixed = (h * 0x9E3779B1) & 0xFFFFFFFF
        b = mixed & mask
        value = mixed >> 4
        if value < mins[b]:
            mins[b] = value
    if _EMPTY in mins and len(set(mins)) > 1:
        for i in range(BINS):
            if mins[i] == _EMPTY:
                j = (i + 1) % BINS
                while mins[j] == _EMPTY:
                    j = (j + 1) % BINS
                mins[i] = mins[j] ^ (i * 0x2545F491 & 0xFFFFFFF)
    return mins


def band_keys(mins: Sequence[int]) -> list[str]:
    """The LSH band keys of a sketch."""
    return [
        f"{band}:{mins[band * ROWS]:x}.{mins[band * ROWS + 1]:x}"
        for band in range(BANDS)
        if mins[band * ROWS] != _EMPTY
    ]


@functools.lru_cache(maxsize=2048)
def skeleton_bands(skeleton: str) -> tuple[str, ...]:
    """``FamilyIndex.keys`` as a tuple, cached: a generator's prompts share their skeleton
    (numbers, names and quoted spans abstracted), so a campaign's prompts after the first
    cost a lookup (sketching costs about 15 µs). 2,048 skeletons of at most
    ``signals.max_prompt_chars`` characters bound the cache."""
    return tuple(band_keys(sketch(shingles(normalise(skeleton)))))


class _Family:
    __slots__ = ("bands", "by_age", "members")

    def __init__(self, edges: int) -> None:
        # Two dicts of atomic values, not one of [time, band] lists: CPython's garbage
        # collector does not track such dicts, and a list per sender was one more object for
        # every full collection to visit (docs/performance.md).
        #: subject -> the last time it sent a prompt of the family
        self.members: dict[str, float] = {}
        #: subject -> its age band index (while it is in ``members``)
        self.bands: dict[str, int] = {}
        self.by_age = [0] * edges


def age_band(age_days: float | None, edges: Sequence[float]) -> int:
    """The index of the first edge ``age_days`` is below (``len(edges)`` when none or unknown)."""
    if age_days is None:
        return len(edges)
    for i, edge in enumerate(edges):
        if age_days < edge:
            return i
    return len(edges)


class FamilyIndex(PassWindow):
    """Prompt families of the main window and who sent them."""

    def __init__(
        self, window_seconds: float, age_edges: Sequence[float], max_bands: int = 4_000_000
    ) -> None:
        self.window = window_seconds
        #: At most this many band keys are kept: the least recently used go first.
        self.max_bands = max_bands
        self.edges = list(age_edges)
        #: band key -> (family id, last time a prompt had it), least recently used first (an
        #: OrderedDict: evicting a plain dict's first key costs O(keys deleted before it)).
        #: Tuples, replaced when used again, not lists updated in place: the garbage collector
        #: stops tracking a tuple of atomic values, and there can be millions of bands.
        self._bands: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._families: dict[str, _Family] = {}
        self._names = [f"{edge:g}" for edge in self.edges]
        #: The last ``assign``'s keys (a tuple, immutable), time and family: the stage assigns
        #: a prompt's keys when it inspects it and ``apply`` again when it observes it, with
        #: the same tuple and time; nothing between two such calls can change the answer but
        #: another ``assign`` (which replaces it) or ``maintain`` (which clears it).
        self._last: tuple[tuple[str, ...], float, str] | None = None
        # While ``maintenance`` runs (``PassWindow``): bands and senders last seen before
        # ``_cutoff``, or senders in ``_forget`` last seen before ``_pass_now``, are as good
        # as forgotten.

    @staticmethod
    def keys(skeleton: str) -> list[str]:
        """The band keys of a prompt's skeleton (empty when it has no words)."""
        return list(skeleton_bands(skeleton))

    def assign(self, keys: Sequence[str], at: float) -> str | None:
        """The family of a prompt with band ``keys`` seen at ``at`` (recorded)."""
        if not keys:
            return None
        last = self._last
        if last is not None and last[0] is keys and last[1] == at:
            return last[2]
        bands = self._bands
        votes: dict[str, int] = {}
        for key in keys:
            entry = bands.get(key)
            if entry is not None:
                if entry[1] < self._cutoff:
                    # The running maintenance forgets it: gone, as after a one-shot one.
                    del bands[key]
                    continue
                votes[entry[0]] = votes.get(entry[0], 0) + 1
        family = None
        if votes:
            best = max(votes, key=votes.__getitem__)  # ties: the first band's family
            if votes[best] >= min(MIN_SHARED_BANDS, len(keys)):
                family = best
        if family is None:
            # A new family, named after its first band no other family holds (a band it
            # shares stays with the family that had it first); with none left to name it
            # after, every band is another family's: it joins the one holding the most.
            fresh = next((key for key in keys if key not in bands), None)
            family = "f-" + fresh.replace(":", "").replace(".", "")[:16] if fresh else best
        for key in keys:
            entry = bands.get(key)
            if entry is None:
                bands[key] = (family, at)
                if len(bands) > self.max_bands:
                    bands.popitem(last=False)
            elif entry[1] < at:
                bands[key] = (entry[0], at)
                bands.move_to_end(key)  # most recently used last: the first goes first
        if type(keys) is tuple:
            self._last = (keys, at, family)
        return family

    def add(self, family: str, subject: str, age_days: float | None, at: float) -> None:
        """Count ``subject`` (of that age) among the senders of ``family``."""
        entry = self._families.get(family)
        if entry is None:
            entry = self._families[family] = _Family(len(self.edges))
        last = entry.members.get(subject)
        if last is not None and (
            last < self._cutoff or (last < self._pass_now and subject in self._forget)
        ):
            # The running maintenance forgets this sender: it joins afresh, as after a
            # one-shot maintenance (its age band read again).
            del entry.members[subject]
            for i in range(entry.bands.pop(subject), len(self.edges)):
                entry.by_age[i] -= 1
            last = None
        if last is None:
            band = age_band(age_days, self.edges)
            entry.members[subject] = at
            entry.bands[subject] = band
            for i in range(band, len(self.edges)):
                entry.by_age[i] += 1
        elif last < at:
            entry.members[subject] = at

    def read(self, family: str | None) -> dict[str, Any]:
        """``input.signals.family``: the id, its senders and its senders by age band."""
        names = self._names
        entry = self._families.get(family) if family is not None else None
        if entry is None:
            return family_document(family, 0, dict.fromkeys(names, 0))
        by_age = dict(zip(names, entry.by_age, strict=True))
        return family_document(family, len(entry.members), by_age)

    def maintain(self, now: float, forget: Set[str] | frozenset[str] = frozenset()) -> None:
        """Forget bands and senders not seen within the window, and the senders in
        ``forget``."""
        for _ in self.maintenance(now, forget):
            pass

    def maintenance(
        self, now: float, forget: Set[str] | frozenset[str] = frozenset(), chunk: int = 64
    ) -> Iterator[None]:
        """``maintain`` in slices, yielding after every ``chunk`` bands or senders.

        While it runs, ``assign`` and ``add`` treat what it will forget as forgotten already,
        so what is left when it ends is what a one-shot ``maintain`` at its start, followed
        by the same calls, would leave.
        """
        cutoff = now - self.window
        self._last = None
        self.begin_pass(now, forget)
        try:
            bands = self._bands
            keys = list(dict.keys(bands))  # not the linked list's order: much faster
            yield
            for start in range(0, len(keys), chunk):
                for key in keys[start : start + chunk]:
                    entry = bands.get(key)
                    if entry is not None and entry[1] < cutoff:
                        del bands[key]
                yield
            for name in list(self._families):
                family = self._families.get(name)
                if family is None:
                    continue
                names = list(family.members)
                for start in range(0, len(names), chunk):
                    members = family.members
                    for subject in names[start : start + chunk]:
                        last = members.get(subject)
                        if last is not None and (
                            last < cutoff or (last < now and subject in forget)
                        ):
                            del members[subject]
                            for i in range(family.bands.pop(subject), len(self.edges)):
                                family.by_age[i] -= 1
                    if len(names) > chunk:
                        yield
                if not family.members and self._families.get(name) is family:
                    del self._families[name]
                yield
        finally:
            self.end_pass()

    def stats(self) -> dict[str, int]:
        return {"families": len(self._families), "family_bands": len(self._bands)}
