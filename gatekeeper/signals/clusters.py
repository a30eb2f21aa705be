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
from collections.abc import Generator, Iterable, Iterator, Set

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
        #: While ``regrouping`` runs: the (subject, key) memberships added since it started.
        self._journal: list[tuple[str, str]] | None = None
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
            if seen is None and len(members) > 1:
                if self._journal is not None:
                    self._journal.append((subject, key))
                other = next(iter(members))
                merged = self._union(subject, other)
                if merged is not None:
                    merges.append(merged)
        return merges

    def _union(self, a: str, b: str) -> tuple[str, str] | None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        into, absorbed = (ra, rb) if ra < rb else (rb, ra)
        self._parent[absorbed] = into
        self._size[into] = self._size.get(into, 1) + self._size.pop(absorbed, 1)
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

        From its start until ``end_pass`` (called by whoever runs the pass, after
        ``regrouping``), ``link`` treats a link the slices will forget as already forgotten
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

    def regrouping(
        self, chunk: int = 64, previous: bool = False
    ) -> Generator[None, None, tuple[dict[str, list[str]], dict[str, str]]]:
        """``regroup`` in slices: the new clusters are built aside, key by key, while
        ``link`` keeps serving (and merging) the current ones and notes every membership it
        adds; the last slice adds those and swaps the new clusters in. What is swapped in
        is what ``regroup`` would build at that moment. With ``previous``, it returns the
        new clusters (root -> members, two or more) and every then linked subject's root
        just before the swap (both O(linked subjects), in that last slice); else two empty
        dicts."""
        fresh = ClusterIndex(self.window, self._edges)
        fresh._band = self._band  # shared: ``link`` records a newcomer's band in it
        alive: set[str] = set()
        journal: list[tuple[str, str]] = []
        self._journal = journal
        try:
            keys = list(self._members)
            yield
            for done, key in enumerate(keys, 1):
                members = self._members.get(key)
                if members:
                    alive.update(members)
                    if len(members) > 1:
                        names = list(members)
                        first = names[0]
                        for start in range(1, len(names), chunk):
                            for other in names[start : start + chunk]:
                                fresh._union(first, other)
                            if len(names) > chunk:
                                yield
                if done % chunk == 0:
                    yield
            if self._edges:
                # Forget the bands of subjects left with no link (in place: ``fresh`` and
                # ``link`` share the dict).
                names = list(self._band)
                for start in range(0, len(names), chunk):
                    joined = {name for name, _ in journal}
                    for subject in names[start : start + chunk]:
                        if subject not in alive and subject not in joined:
                            self._band.pop(subject, None)
                            self._seen.pop(subject, None)
                    yield
            for subject, key in journal:
                members = self._members.get(key)
                if members:
                    fresh._union(subject, next(iter(members)))
            if not previous:
                self._parent, self._size, self._by_age = fresh._parent, fresh._size, fresh._by_age
                return {}, {}
            before = {s: self.find(s) for s in self.linked_subjects()}
            self._parent, self._size, self._by_age = fresh._parent, fresh._size, fresh._by_age
            groups: dict[str, list[str]] = {}
            for subject in list(self._parent):
                groups.setdefault(self.find(subject), []).append(subject)
            for root, group in groups.items():
                group.append(root)
            return groups, before
        finally:
            self._journal = None

    def linked_subjects(self) -> list[str]:
        """Every subject in a cluster of two or more."""
        return [*self._parent, *self._size]

    def __len__(self) -> int:
        """Link keys currently remembered."""
        return len(self._members)
