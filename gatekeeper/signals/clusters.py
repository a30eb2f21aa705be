"""Account clusters: subjects linked by attributes they shared within a window.

Each request carries link keys, one per configured attribute or combination (setting
``signals.link_by``): ``payment:<h>`` for a payment fingerprint, ``org:<h>``, and e.g.
``network+user_agent:<h>`` for "the same /24 (IPv4) or /48 (IPv6) with the same User-Agent".
Values are hashed, so neither this index nor the Redis stream holds the raw attributes. Two
subjects that used one link key within the window are in one cluster, and so, transitively,
is everyone linked to either of them (union-find).

The cluster id is derived from the cluster's smallest subject id, so every gateway that saw
the same links names the cluster the same way, and the id changes only when the membership
does (a merge keeps the id of the side holding the smallest member).

Links expire: ``rebuild`` (run once per bucket of the main window) drops links not used within
the window and rebuilds the union-find, so clusters split again when what tied them is gone.

With ``age_edges``, each cluster also counts its members by account-age band (``by_age``: how
many are younger than each edge), kept up to date on every merge and rebuild.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Set

from gatekeeper.signals.windows import PassWindow


def link_key(kind: str, values: Iterable[object]) -> str:
    """``<kind>:<hash of the values>``, e.g. ``payment:5f0c…``."""
    return _link_key(kind, "\x1f".join(str(v) for v in values))


@functools.lru_cache(maxsize=65536)
def _link_key(kind: str, joined: str) -> str:
    # Cached: a subject sends the same attributes request after request.
    return f"{kind}:{hashlib.blake2b(joined.encode(), digest_size=8).hexdigest()}"


@functools.lru_cache(maxsize=65536)
def cluster_id(root: str) -> str:
    """The public id of the cluster whose smallest member is ``root``."""
    # Cached: every request reads its cluster's id (0.6 µs to hash, 0.07 µs cached), and
    # roots are the active subjects.
    return "c-" + hashlib.blake2b(root.encode(), digest_size=6).hexdigest()


class ClusterIndex(PassWindow):
    """Union-find over subjects, fed with link keys and their last use."""

    def __init__(self, window_seconds: float, age_edges: int = 0) -> None:
        self.window = window_seconds
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}
        #: link key -> {subject: last time it used the key}
        self._members: dict[str, dict[str, float]] = {}
        self._edges = age_edges
        #: subject -> its age band (index of the first edge its age is below; edges: unknown)
        self._band: dict[str, int] = {}
        #: root of a cluster of two or more -> members younger than each edge
        self._by_age: dict[str, list[int]] = {}
        #: subject -> the last time it used any link key (with ``_band``)
        self._seen: dict[str, float] = {}
        #: While a ``Regroup`` runs: the (subject, key) memberships added since it started.
        self._journal: list[tuple[str, str]] | None = None
        #: In a ``Regroup``'s new union-find built with ``groups``: root of a cluster of two
        #: or more -> its members (``members``).
        self._groups: dict[str, list[str]] | None = None
        # While ``prune`` runs (``PassWindow``): links last used before ``_cutoff``, or
        # before ``_pass_now`` by a subject in ``_forget``, are as good as forgotten.

    def _own(self, subject: str) -> list[int]:
        band = self._band.get(subject, self._edges)
        return [int(band <= i) for i in range(self._edges)]

    def by_age(self, root: str) -> list[int]:
        """How many of the cluster's members are younger than each age edge."""
        counts = self._by_age.get(root)
        return list(counts) if counts is not None else self._own(root)

    def find(self, subject: str) -> str:
        """The root (smallest member) of ``subject``'s cluster; itself when alone."""
        parent = self._parent
        root = subject
        while (up := parent.get(root, root)) != root:
            root = up
        while (up := parent.get(subject, subject)) != root:  # path compression
            parent[subject] = root
            subject = up
        return root

    def size(self, root: str) -> int:
        return self._size.get(root, 1)

    def roots(self) -> list[str]:
        """The roots of the clusters of two or more."""
        return list(self._size)

    def is_root(self, subject: str) -> bool:
        """Whether ``subject`` is the root of a cluster of two or more."""
        return subject in self._size

    def link(
        self, subject: str, keys: Iterable[str], at: float, band: int | None = None
    ) -> list[tuple[str, str]]:
        """Record that ``subject`` (of age band ``band``) used ``keys`` at ``at``; the merges
        it caused, as ``(absorbed root, surviving root)`` pairs in order."""
        if self._edges and band is not None:
            seen = self._seen.get(subject)
            if (
                seen is None
                or seen < self._cutoff
                or (seen < self._pass_now and subject in self._forget)
            ):
                # New, or every link it had is one the running prune forgets: its band is
                # read again, as after a one-shot rebuild.
                self._band[subject] = band
                self._seen[subject] = at
            elif seen < at:
                self._seen[subject] = at
        merges: list[tuple[str, str]] = []
        for key in keys:
            members = self._members.get(key)
            if members is None:
                self._members[key] = {subject: at}
                if self._journal is not None:
                    self._journal.append((subject, key))  # as below
                continue
            seen = members.get(subject)
            if seen is not None and (
                seen < self._cutoff or (seen < self._pass_now and subject in self._forget)
            ):
                seen = None  # the running prune forgets it: a newcomer, as after a one-shot
            if seen is None or seen < at:
                members[subject] = at
            # Every member of a key is in one cluster (each joined it through a union with an
            # earlier member), so only a newcomer can merge anything.
            if seen is None and self._journal is not None:
                # Noted even alone: a ``Regroup`` keeps the age band of a subject with a link.
                self._journal.append((subject, key))
            if seen is None and len(members) > 1:
                other = next(iter(members))
                merged = self._union(subject, other)
                if merged is not None:
                    merges.append(merged)
        return merges

    def members(self, root: str) -> list[str]:
        """The members of the cluster whose root is ``root`` (a copy), in an index built
        with member lists (``Regroup(groups=True)``); ``[root]`` when alone."""
        assert self._groups is not None
        group = self._groups.get(root)
        return list(group) if group is not None else [root]

    def union(self, a: str, b: str) -> tuple[str, str] | None:
        """Put ``a`` and ``b`` in one cluster; ``(absorbed root, surviving root)`` if that
        merged two."""
        return self._union(a, b)

    def _union(self, a: str, b: str) -> tuple[str, str] | None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        into, absorbed = (ra, rb) if ra < rb else (rb, ra)
        self._parent[absorbed] = into
        self._size[into] = self._size.get(into, 1) + self._size.pop(absorbed, 1)
        groups = self._groups
        if groups is not None:
            # The shorter list joins the longer: O(n log n) appends for n members in all.
            mine = groups.get(into) or [into]
            theirs = groups.pop(absorbed, None) or [absorbed]
            if len(mine) < len(theirs):
                mine, theirs = theirs, mine
            mine.extend(theirs)
            groups[into] = mine
        if self._edges:
            kept = self._by_age.pop(into, None) or self._own(into)
            taken = self._by_age.pop(absorbed, None) or self._own(absorbed)
            self._by_age[into] = [a + b for a, b in zip(kept, taken, strict=True)]
        return absorbed, into

    def shared(self, subject: str, keys: Iterable[str]) -> list[str]:
        """The kinds of ``keys`` that ``subject`` shares with at least one other subject."""
        kinds = []
        for key in keys:
            members = self._members.get(key)
            if members is not None and (len(members) > 1 or subject not in members):
                kinds.append(key.partition(":")[0])
        return kinds

    def rebuild(
        self, now: float, forget: Set[str] | frozenset[str] = frozenset()
    ) -> dict[str, list[str]]:
        """Forget links unused within the window, and every link of the subjects in
        ``forget``, and rebuild the clusters from the rest.

        Returns the clusters of two or more members: root -> members.
        """
        self.begin_pass(now, forget)
        try:
            for _ in self.prune(now, forget):
                pass
            return self.regroup()
        finally:
            self.end_pass()

    def prune(
        self, now: float, forget: Set[str] | frozenset[str] = frozenset(), chunk: int = 64
    ) -> Iterator[None]:
        """``rebuild``'s first part, in slices: forget stale links, yielding after every
        ``chunk`` link keys (or members of one large key).

        From its start until ``end_pass`` (called by whoever runs the pass, after the
        ``Regroup``), ``link`` treats a link the slices will forget as already forgotten
        (a subject using it again joins the key afresh, its age band read again), so the
        links left are those a one-shot prune at its start, followed by the same calls,
        would leave.
        """
        cutoff = now - self.window
        self.begin_pass(now, forget)
        keys = list(self._members)
        yield
        done = 0
        for key in keys:
            members = self._members.get(key)
            if members is None:
                continue
            names = list(members)
            for start in range(0, len(names), chunk):
                for subject in names[start : start + chunk]:
                    last = members.get(subject)
                    if last is not None and (last < cutoff or (last < now and subject in forget)):
                        del members[subject]
                if len(names) > chunk:
                    yield
            if not members and self._members.get(key) is members:
                del self._members[key]
            done += 1
            if done % chunk == 0:
                yield

    def regroup(self) -> dict[str, list[str]]:
        """``rebuild``'s second part: the clusters of the links now kept, from scratch.

        Returns the clusters of two or more members: root -> members.
        """
        self._parent.clear()
        self._size.clear()
        self._by_age.clear()
        if self._edges:
            alive = {s for members in self._members.values() for s in members}
            self._band = {s: b for s, b in self._band.items() if s in alive}
            self._seen = {s: t for s, t in self._seen.items() if s in alive}
        for members in self._members.values():
            if len(members) > 1:
                first, *rest = members
                for other in rest:
                    self._union(first, other)
        groups: dict[str, list[str]] = {}
        for subject in list(self._parent):
            groups.setdefault(self.find(subject), []).append(subject)
        for root, group in groups.items():
            group.append(root)
        return groups

    def regrouping(self, chunk: int = 64) -> Iterator[None]:
        """``regroup`` in slices: the new clusters are built aside (``Regroup``), key by key,
        while ``link`` keeps serving (and merging) the current ones and notes every
        membership it adds; those are added in slices too, and the slice that finds none
        left swaps the new clusters in. What is swapped in is what ``regroup`` would build
        at that moment."""
        regroup = Regroup(self)
        try:
            yield from regroup.build(chunk)
            while True:
                for subject, other in regroup.take(chunk):
                    regroup.fresh.union(subject, other)
                if not regroup.pending():
                    break
                yield
            regroup.swap()
        finally:
            regroup.close()

    def linked_subjects(self) -> list[str]:
        """Every subject in a cluster of two or more."""
        return [*self._parent, *self._size]

    def __len__(self) -> int:
        """Link keys currently remembered."""
        return len(self._members)


class Regroup:
    """New clusters of ``index`` built aside from the ones it serves: ``build`` unions every
    link key's members in slices while ``link`` keeps serving (and merging) the current
    clusters and notes each membership it adds; ``take`` hands those out to be added,
    ``swap`` puts the new clusters in place (``ClusterIndex.regrouping``; the account
    clusters' pass drives one itself to recount their usage, ``SignalState``).

    With ``groups``, the new union-find keeps each cluster's member list as it merges
    (``ClusterIndex.members``).
    """

    def __init__(self, index: ClusterIndex, groups: bool = False) -> None:
        self.index = index
        self.fresh = ClusterIndex(index.window, index._edges)
        self.fresh._band = index._band  # shared: ``link`` records a newcomer's band in it
        if groups:
            self.fresh._groups = {}
        self._journal: list[tuple[str, str]] = []
        self._taken = 0
        index._journal = self._journal

    def build(self, chunk: int) -> Iterator[None]:
        """Union every key's members, ``chunk`` keys (or unions) a step; then forget the
        age bands of subjects left with no link."""
        index, fresh = self.index, self.fresh
        alive: set[str] = set()
        keys = list(index._members)
        yield
        for done, key in enumerate(keys, 1):
            members = index._members.get(key)
            if members and len(members) <= chunk:
                alive.update(members)
                first, *rest = members
                for other in rest:
                    fresh._union(first, other)
            elif members:
                # A large key (a behavioural band of tens of thousands): noted alive and
                # unioned ``chunk`` members a step, not all at once.
                names = list(members)
                first = names[0]
                for start in range(0, len(names), chunk):
                    part = names[start : start + chunk]
                    alive.update(part)
                    for other in part:
                        fresh._union(first, other)
                    yield
            if done % chunk == 0:
                yield
        if index._edges:
            # In place: ``fresh`` and ``link`` share the dict.
            journal = self._journal
            joined: set[str] = set()
            noted = 0
            names = list(index._band)
            for start in range(0, len(names), chunk):
                joined.update(name for name, _ in journal[noted:])
                noted = len(journal)
                for subject in names[start : start + chunk]:
                    if subject not in alive and subject not in joined:
                        index._band.pop(subject, None)
                        index._seen.pop(subject, None)
                yield

    def take(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` of the memberships ``link`` added since the build started, oldest
        first, as (subject, a member of its key) pairs for ``fresh`` to union."""
        entries = self._journal[self._taken : self._taken + limit]
        self._taken += len(entries)
        members_of = self.index._members
        pairs = []
        for subject, key in entries:
            members = members_of.get(key)
            if members:
                pairs.append((subject, next(iter(members))))
        return pairs

    def pending(self) -> bool:
        """Whether ``link`` added memberships that ``take`` has not handed out yet."""
        return self._taken < len(self._journal)

    def swap(self) -> None:
        """Serve the new clusters (every membership taken: what ``regroup`` would build)."""
        assert not self.pending()
        index, fresh = self.index, self.fresh
        index._parent, index._size, index._by_age = fresh._parent, fresh._size, fresh._by_age
        fresh._groups = None
        self.close()

    def close(self) -> None:
        """Stop noting memberships (done, or the pass was abandoned)."""
        if self.index._journal is self._journal:
            self.index._journal = None
