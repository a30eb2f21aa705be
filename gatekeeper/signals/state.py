"""The signals' in-process state: per-subject and per-cluster usage in rolling windows.

Every gateway holds one ``SignalState``. Its own requests are applied at once; with Redis
storage, other gateways' observations arrive through a Redis stream a moment later and are
applied the same way (``gatekeeper.signals.store``), so every gateway converges on the same
counts and reads them without a network round trip.

What is kept, per subject and per cluster of two or more subjects: the usage metrics
(``USAGE_METRICS``) in every configured window, and the template hashes of the main window. A
cluster's usage is the sum of its members' since they joined it; a singleton's cluster usage is
its own. Memory is bounded by activity: a subject idle for the longest window is forgotten by
``maintain``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from gatekeeper.contract import ClusterSignals, SubjectSignals
from gatekeeper.input_document import (
    USAGE_MAPS,
    behaviour_document,
    cluster_document,
    usage_document,
)
from gatekeeper.signals.clusters import ClusterIndex, Regroup, cluster_id
from gatekeeper.signals.families import FamilyIndex, age_band
from gatekeeper.signals.fingerprint import Fingerprint, RequestFeatures, behaviour_keys
from gatekeeper.signals.shift import ShiftIndex
from gatekeeper.signals.windows import MAX_AMOUNT, RollingTally, WindowCounts

#: The counters kept per window, in the order of ``input.signals.subject``'s usage maps.
USAGE_METRICS = USAGE_MAPS
#: Account-age band edges (days) of the ``subjects_by_age`` counts, unless configured.
DEFAULT_AGE_EDGES = (7.0, 30.0, 90.0)


@dataclass(slots=True)
class Observation:
    """One thing a gateway saw about a subject, as applied and replicated.

    A request is observed twice: when the policy has decided (``requests = 1``, whether it
    asked for reasoning, was refused, repeated one of the subject's prompt families, its
    template, links, prompt-family band keys, behavioural features and the account's age) and,
    if it ran, after the response (the tokens it used, the reasoning tokens the client saw and
    ``reasoning_exposed = 1`` when it saw any).

    Not a frozen dataclass, though nothing changes one once made: the stage makes two per
    request, and a frozen one's ``__init__`` sets its 15 fields through
    ``object.__setattr__`` (1.8 µs against 0.45 µs, docs/performance.md). Not hashable.
    """

    at: float
    subject: str
    requests: int = 0
    tokens: int = 0
    reasoning_requests: int = 0
    reasoning_tokens: int = 0
    refused: int = 0
    template: str | None = None
    links: tuple[str, ...] = ()
    reasoning_exposed: int = 0
    repeated: int = 0
    bands: tuple[str, ...] = ()
    features: RequestFeatures | None = None
    age_days: float | None = None
    #: The model the request called (the model-shift signal, shift.py).
    model: str | None = None

    @property
    def amounts(self) -> tuple[int, ...]:
        return (
            self.requests,
            self.tokens,
            self.reasoning_requests,
            self.reasoning_tokens,
            self.refused,
            self.reasoning_exposed,
            self.repeated,
        )

    def to_wire(self) -> list[Any]:
        """A compact JSON-able form for the Redis stream (15 items; 14 before the model, 9
        before families)."""
        return [
            self.at,
            self.subject,
            *self.amounts,
            self.template,
            list(self.links),
            list(self.bands),
            self.features.to_wire() if self.features is not None else None,
            self.age_days,
            self.model,
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> Observation:
        """The inverse of ``to_wire``; raises ``ValueError`` on anything else.

        The 9-item form of earlier gateways (five amounts, no families or features) and the
        14-item one (no model) are read too, so a fleet can be upgraded one gateway at a time.
        """
        if isinstance(raw, list) and len(raw) == 9:
            raw = [*raw[:7], 0, 0, raw[7], raw[8], [], None, None]
        if isinstance(raw, list) and len(raw) == 14:
            raw = [*raw, None]
        if not isinstance(raw, list) or len(raw) != 15:
            raise ValueError("an observation is a list of 15 items")
        at, subject, template, links = raw[0], raw[1], raw[9], raw[10]
        bands, features, age, model = raw[11], raw[12], raw[13], raw[14]
        amounts = raw[2:9]
        if not isinstance(at, (int, float)) or not isinstance(subject, str):
            raise ValueError("bad observation time or subject")
        if not all(
            isinstance(a, int) and not isinstance(a, bool) and -MAX_AMOUNT <= a <= MAX_AMOUNT
            for a in amounts
        ):
            raise ValueError("bad observation amounts")
        if template is not None and not isinstance(template, str):
            raise ValueError("bad observation template")
        if not isinstance(links, list) or not all(isinstance(k, str) for k in links):
            raise ValueError("bad observation links")
        if not isinstance(bands, list) or not all(isinstance(k, str) for k in bands):
            raise ValueError("bad observation bands")
        if age is not None and (not isinstance(age, (int, float)) or isinstance(age, bool)):
            raise ValueError("bad observation age")
        if model is not None and not isinstance(model, str):
            raise ValueError("bad observation model")
        requests, tokens, reasoning_requests, reasoning_tokens, refused, exposed, repeated = amounts
        return cls(
            float(at),
            subject,
            requests,
            tokens,
            reasoning_requests,
            reasoning_tokens,
            refused,
            template,
            tuple(links),
            exposed,
            repeated,
            bands=tuple(bands),
            features=RequestFeatures.from_wire(features) if features is not None else None,
            age_days=float(age) if age is not None else None,
            model=model,
        )


class _Usage(WindowCounts):
    """One subject's or one cluster's counters: every window's in one array (``WindowCounts``),
    and the main window's template and family tally.

    Five objects the garbage collector tracks (this, its counters' array, the tally, the
    tally's stamps array and bucket list), of which it visits the items of one, the tally's
    bucket list; the three windows' counters in lists were 13 objects and ~270 items to
    visit in every full collection (docs/performance.md, "The garbage collector's full
    collections")."""

    __slots__ = ("swept", "templates")

    def __init__(self, windows: Sequence[float], main: float, buckets: int) -> None:
        super().__init__(windows, buckets, len(USAGE_METRICS))
        #: The maintenance pass that last looked at it (``SignalState.maintenance``).
        self.swept = 0
        self.templates = RollingTally(main, buckets)

    def count(
        self, at: float, amounts: tuple[int, ...], template: str | None, family: str | None
    ) -> None:
        self.add(at, amounts)
        if template is not None or family is not None:
            # Family ids ("f-...") and template hashes (hex) never collide: one tally.
            self.templates.add_keys(at, template, family)

    def merge(self, other: _Usage) -> None:
        self.merge_counts(other)
        self.templates.merge(other.templates)


class _Holder:
    """The usage a changed account cluster is being recounted into (``_Recount``); ``into``:
    the holder it was merged into since, when two such clusters joined."""

    __slots__ = ("dead", "into", "usage")

    def __init__(self, usage: _Usage) -> None:
        self.usage = usage
        self.into: _Holder | None = None
        #: Its cluster turned out to keep its members after all: the count is dropped.
        self.dead = False

    def head(self) -> _Holder:
        holder = self
        while holder.into is not None:
            holder = holder.into
        return holder


class _Recount:
    """The usage of the account clusters a ``Regroup`` builds, counted in slices before the
    swap, so that when it swaps the new clusters in their usage is ready (what
    ``SignalState._maintenance``'s one-shot recount at that moment would give).

    A new cluster whose members are exactly an old cluster's keeps the old counters, else it
    is recounted from its members' own usage. The new clusters only split the old ones (every
    member of a link key is in one old cluster), so a new cluster's old cluster is its
    root's, and the members are the same when the sizes are. Both can change while the pass
    runs, only through a membership ``link`` adds (it merges old clusters, and ``take`` hands
    it to the new union-find): each new cluster is decided once, and again when a membership
    taken touches it (``dirty``). A member's own usage is added to its cluster's count in
    slices (``work``); what the member does after that is added too (``forward``, from
    ``SignalState.apply``), so each count is its members' own usage at the swap.
    """

    def __init__(self, state: SignalState, regroup: Regroup, now: float) -> None:
        self.state = state
        self.regroup = regroup
        self.fresh = regroup.fresh
        self.now = now
        #: New root -> the usage it will have (old counters, or a holder's count).
        self.usage: dict[str, _Usage] = {}
        #: New root -> the holder its members are counted into (changed clusters only).
        self.holders: dict[str, _Holder] = {}
        #: Subject -> the holder its own usage was added to.
        self.counted: dict[str, _Holder] = {}
        #: Members still to add: [holder, members, position].
        self.work: deque[list[Any]] = deque()
        #: New roots to decide again (a dict: in order).
        self.dirty: dict[str, None] = {}

    def busy(self) -> bool:
        return bool(self.regroup.pending() or self.dirty or self.work)

    def decide(self, root: str) -> None:
        """Whether the new cluster of ``root`` keeps its old counters or is recounted."""
        fresh, live = self.fresh, self.state.clusters
        if not fresh.is_root(root):
            return  # merged since: its new root is in ``dirty``
        old = live.find(root)
        current = self.state._cluster_usage.get(old)
        holder = self.holders.get(root)
        if current is not None and live.size(old) == fresh.size(root):
            if holder is not None:
                holder.dead = True
                del self.holders[root]
            current.templates.compact(self.now)
            self.usage[root] = current
            return
        if holder is None:
            holder = self.holders[root] = _Holder(self.state._new_usage())
            self.work.append([holder, fresh.members(root), 0])
        self.usage[root] = holder.usage

    def take(self, limit: int) -> None:
        """Add up to ``limit`` of the memberships ``link`` made to the new clusters."""
        fresh = self.fresh
        for subject, other in self.regroup.take(limit):
            ra, rb = fresh.find(subject), fresh.find(other)
            if ra == rb:
                self.dirty[ra] = None  # its old cluster may have grown
                continue
            into, absorbed = (ra, rb) if ra < rb else (rb, ra)
            kept = self.holders.get(into)
            taken = self.holders.pop(absorbed, None)
            self.usage.pop(absorbed, None)
            if kept is not None and taken is not None:
                kept.usage.merge(taken.usage)
                taken.into = kept
            elif kept is not None:
                self.work.append([kept, fresh.members(absorbed), 0])
            elif taken is not None:
                self.holders[into] = taken
                self.work.append([taken, fresh.members(into), 0])
            fresh.union(ra, rb)
            self.dirty[into] = None

    def settle(self, limit: int) -> None:
        """Decide again up to ``limit`` clusters that memberships touched."""
        dirty = self.dirty
        for _ in range(min(limit, len(dirty))):
            root = next(iter(dirty))
            del dirty[root]
            self.decide(root)

    def count(self, limit: int) -> None:
        """Add up to ``limit`` members' own usage to their cluster's count."""
        subjects, counted, work = self.state._subjects, self.counted, self.work
        while limit > 0 and work:
            item = work[0]
            holder = item[0].head()
            if holder.dead:
                work.popleft()
                continue
            members, start = item[1], item[2]
            end = min(len(members), start + limit)
            usage = holder.usage
            for member in members[start:end]:
                own = subjects.get(member)
                if own is not None:
                    usage.merge(own)
                counted[member] = holder
            limit -= end - start
            if end == len(members):
                work.popleft()
            else:
                item[2] = end

    def forward(
        self,
        subject: str,
        at: float,
        amounts: tuple[int, ...],
        template: str | None,
        family: str | None,
    ) -> None:
        """What ``subject`` did, added to the count its own usage went into, if any."""
        holder = self.counted.get(subject)
        if holder is not None:
            holder = holder.head()
            if not holder.dead:
                holder.usage.count(at, amounts, template, family)


class SignalState:
    """Usage, templates and clusters of every recently active subject."""

    def __init__(
        self,
        windows: dict[str, float],
        main: str,
        buckets: int = 12,
        *,
        age_edges: Sequence[float] = DEFAULT_AGE_EDGES,
        behaviour_min_requests: int = 5,
        max_subjects: int = 200_000,
        max_family_bands: int = 4_000_000,
        shift_windows: Sequence[str] | None = None,
    ) -> None:
        if main not in windows:
            raise ValueError(f"main window {main!r} is not one of {sorted(windows)}")
        self.names = list(windows)
        self._seconds = list(windows.values())
        self._main = self.names.index(main)
        self._main_seconds = windows[main]
        self._buckets = buckets
        self.age_edges = list(age_edges)
        self._age_names = [f"{edge:g}" for edge in self.age_edges]
        self.clusters = ClusterIndex(self._main_seconds, len(self.age_edges))
        #: Behavioural clusters: subjects whose fingerprints share a band key (fingerprint.py).
        self.behaviour = ClusterIndex(self._main_seconds, len(self.age_edges))
        self.families = FamilyIndex(self._main_seconds, self.age_edges, max_family_bands)
        self.behaviour_min_requests = behaviour_min_requests
        self._fingerprints: dict[str, Fingerprint] = {}
        # Model shift: the shortest window against the longest, unless configured (a prior
        # window no longer than the recent one: no history, no subject ever moves).
        by_length = sorted(windows, key=windows.__getitem__)
        recent, prior = shift_windows or (by_length[0], by_length[-1])
        for name in (recent, prior):
            if name not in windows:
                raise ValueError(f"shift window {name!r} is not one of {sorted(windows)}")
        self.shift = ShiftIndex(windows[recent], windows[prior], buckets)
        #: Usage by subject, least recently active first (``apply`` moves a subject last; an
        #: OrderedDict: evicting a plain dict's first key costs O(keys deleted before it)).
        self._subjects: OrderedDict[str, _Usage] = OrderedDict()
        #: At most this many subjects are kept: past it, the least recently active is
        #: forgotten at once (usage, fingerprint) and from the indexes at the next
        #: ``maintain``, run early once a quarter of the bound has been forgotten.
        self.max_subjects = max_subjects
        self._evicted: set[str] = set()
        #: Whether a background task runs the passes (``SignalStage`` sets it): then a
        #: quarter of the bound evicted asks it for a pass early (``maintenance_due``)
        #: instead of running ``maintain`` at once, on the request path.
        self.background = False
        self.maintenance_due = False
        #: The last ``link``'s subject, keys (a tuple, immutable) and time (see ``link``).
        self._last_link: tuple[str, tuple[str, ...], float] | None = None
        #: Usage of clusters of two or more subjects, by root.
        self._cluster_usage: dict[str, _Usage] = {}
        #: The running maintenance pass (``maintenance``): its number, time and generator.
        self._pass = 0
        self._pass_at: float | None = None
        self._running: Generator[None, None, None] | None = None
        #: While the pass recounts the account clusters: their new usage (``_Recount``).
        self._recounting: _Recount | None = None

    @property
    def maintenance_interval(self) -> float:
        """How often ``maintain`` should run: one bucket of the main window."""
        return self._main_seconds / self._buckets

    def _new_usage(self) -> _Usage:
        usage = _Usage(self._seconds, self._main_seconds, self._buckets)
        usage.swept = self._pass
        return usage

    def _sweep(self, subject: str, usage: _Usage, now: float) -> bool:
        """Forget ``subject`` if idle at ``now``, else free its expired template tallies
        (once per pass); whether it was forgotten."""
        usage.swept = self._pass
        if usage.idle(now):
            del self._subjects[subject]
            self._fingerprints.pop(subject, None)
            return True
        usage.templates.compact(now)
        return False

    def _swept(self, subject: str) -> None:
        """While a pass runs: sweep ``subject`` now if the pass has not reached it yet, so
        what a request does to it lands as after a one-shot ``maintain``."""
        assert self._pass_at is not None
        usage = self._subjects.get(subject)
        if usage is not None and usage.swept != self._pass:
            self._sweep(subject, usage, self._pass_at)

    def age_band(self, age_days: float | None) -> int:
        """The index of the first age edge ``age_days`` is below."""
        return age_band(age_days, self.age_edges)

    def link(
        self, subject: str, links: Sequence[str], at: float, age_days: float | None = None
    ) -> None:
        """Record ``subject``'s link keys, merging clusters they join."""
        last = self._last_link
        if last is not None and last[1] is links and last[0] == subject and last[2] == at:
            # The stage links a request's keys when it inspects it and ``apply`` again when
            # it observes it: the second time every key already holds the subject at ``at``,
            # and linking again changes nothing.
            return
        self._last_link = (subject, links, at) if type(links) is tuple else None
        band = self.age_band(age_days)
        for absorbed, into in self.clusters.link(subject, links, at, band):
            # A singleton's cluster usage is its own: copy it, never share the object.
            kept = self._cluster_usage.pop(into, None)
            taken = self._cluster_usage.pop(absorbed, None)
            if kept is None and taken is not None:
                # Keep the bigger cluster's counters and add the singleton's: a new account
                # joining a campaign costs O(its own usage), not O(the campaign's).
                kept, taken = taken, self._subjects.get(into)
            elif taken is None:
                taken = self._subjects.get(absorbed)
            if kept is None:
                kept = self._new_usage()
                alone = self._subjects.get(into)
                if alone is not None:
                    kept.merge(alone)
            if taken is not None:
                kept.merge(taken)
            self._cluster_usage[into] = kept

    def apply(self, obs: Observation) -> None:
        """Count one observation (links first, so it lands in the cluster it joins)."""
        if self._pass_at is not None:
            self._swept(obs.subject)
        if obs.links:
            self.link(obs.subject, obs.links, obs.at, obs.age_days)
        family = None
        if obs.bands:
            family = self.families.assign(obs.bands, obs.at)
            if family is not None:
                self.families.add(family, obs.subject, obs.age_days, obs.at)
        if obs.features is not None:
            self._fingerprint(obs)
        if obs.model is not None and obs.requests:
            self.shift.add(obs.subject, obs.model, obs.at, self.behaviour.find)
        subjects = self._subjects
        usage = subjects.get(obs.subject)
        new = usage is None
        if usage is None:
            usage = subjects[obs.subject] = self._new_usage()
        else:
            subjects.move_to_end(obs.subject)  # most recently active last
        amounts = obs.amounts
        usage.count(obs.at, amounts, obs.template, family)
        cluster = self._cluster_usage.get(self.clusters.find(obs.subject))
        if cluster is not None:
            cluster.count(obs.at, amounts, obs.template, family)
        if self._recounting is not None:
            self._recounting.forward(obs.subject, obs.at, amounts, obs.template, family)
        # After counting: an eviction may run ``maintain``, which forgets idle (empty) usage.
        if new and len(subjects) > self.max_subjects:
            self._evict(obs.at)

    def _evict(self, now: float) -> None:
        """Forget the least recently active subject (over ``max_subjects``)."""
        subject, _ = self._subjects.popitem(last=False)
        self._fingerprints.pop(subject, None)
        self._evicted.add(subject)
        if len(self._evicted) >= max(1, self.max_subjects // 4):
            if self.background:
                self.maintenance_due = True  # the background task runs a pass early
            else:
                self.maintain(now)

    def _fingerprint(self, obs: Observation) -> None:
        assert obs.features is not None
        fingerprint = self._fingerprints.get(obs.subject)
        if fingerprint is None:
            fingerprint = self._fingerprints[obs.subject] = Fingerprint()
        fingerprint.add(obs.at, obs.features)
        n = fingerprint.n
        # The band keys move slowly once a fingerprint has some history: recomputed (and their
        # last use refreshed) on every request up to 4x the minimum, then every 8th request.
        if n >= self.behaviour_min_requests and (
            n <= 4 * self.behaviour_min_requests or n % 8 == 0
        ):
            keys = behaviour_keys(fingerprint)
            self.behaviour.link(obs.subject, keys, obs.at, self.age_band(obs.age_days))

    def family_of(self, bands: Sequence[str], at: float) -> str | None:
        """The prompt family of band keys ``bands`` (recorded, as ``apply`` will again)."""
        return self.families.assign(bands, at) if bands else None

    def read_family(self, family: str | None) -> dict[str, Any]:
        """``input.signals.family``."""
        return self.families.read(family)

    def read_behaviour(self, subject: str) -> dict[str, Any]:
        """``input.signals.behaviour``: the subject's behavioural cluster."""
        if self._pass_at is not None:
            self._swept(subject)
        root = self.behaviour.find(subject)
        fingerprint = self._fingerprints.get(subject)
        return behaviour_document(
            cluster_id(root) if root != subject or self.behaviour.size(root) > 1 else None,
            self.behaviour.size(root),
            dict(zip(self._age_names, self.behaviour.by_age(root))),  # noqa: B905
            fingerprint is not None and fingerprint.n >= self.behaviour_min_requests,
        )

    def read_shift(self, subject: str, model: str | None, now: float) -> dict[str, Any]:
        """``input.signals.model_shift``: the subject's move to ``model`` (shift.py)."""
        return self.shift.read(subject, model, now, self.behaviour.find(subject))

    def read(
        self,
        subject: str,
        template: str | None,
        links: Sequence[str],
        now: float,
        family: str | None = None,
    ) -> tuple[SubjectSignals, ClusterSignals, float]:
        """The subject's and its cluster's signals at ``now``, and the template repetition."""
        own, cluster, repetition = self.read_documents(subject, template, links, now, family)
        return SubjectSignals(**own), ClusterSignals(**cluster), repetition

    def read_documents(
        self,
        subject: str,
        template: str | None,
        links: Sequence[str],
        now: float,
        family: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], float]:
        """``read`` as the JSON the policy sees (``input.signals.subject`` and ``.cluster``,
        built by ``gatekeeper.input_document``; the subject's ``account_age_days`` is added by
        ``signals_document``): no models built, a read costs about a third of building and
        dumping ``SubjectSignals`` and ``ClusterSignals`` (a cluster of one is read once).
        """
        own = self._subjects.get(subject)
        root = self.clusters.find(subject)
        size = self.clusters.size(root)
        subject_doc = self._usage(own, template, family, now)
        if size > 1:
            usage = self._usage(self._cluster_usage.get(root), template, family, now)
        else:
            # A cluster of one (most subjects) has the subject's own usage: read it once.
            usage = {k: dict(v) if isinstance(v, dict) else v for k, v in subject_doc.items()}
        cluster_doc = cluster_document(
            usage,
            cluster_id(root),
            size,
            self.clusters.shared(subject, links),
            dict(zip(self._age_names, self.clusters.by_age(root))),  # noqa: B905
        )
        repetition = 0.0
        if template is not None:
            main = self.names[self._main]
            for doc in (subject_doc, cluster_doc):
                seen = doc["requests"].get(main, 0)
                share = (doc["template_count"] + 1) / (seen + 1)
                repetition = max(repetition, min(1.0, share))
        return subject_doc, cluster_doc, round(repetition, 4)

    def _usage(
        self, usage: _Usage | None, template: str | None, family: str | None, now: float
    ) -> dict[str, Any]:
        """``usage``'s ``UsageSignals`` document at ``now``."""
        if usage is None:
            return usage_document(self.names)
        return usage_document(
            self.names,
            usage.window_sums(now),
            self._main,
            usage.templates.count(now, template) if template else 0,
            usage.templates.count(now, family) if family else 0,
        )

    def maintain(self, now: float) -> None:
        """Forget idle subjects and expired links, and the subjects evicted since the last
        run from the indexes; rebuild the clusters (off the hot path). At once: a pass
        already running (``maintenance``) is finished first."""
        if self._running is not None:
            for _ in self._running:
                pass
        for _ in self.maintenance(now):
            pass

    def maintenance(self, now: float, chunk: int = 64) -> Generator[None, None, None]:
        """``maintain`` as a pass of slices: the generator does a bounded piece of work
        (``chunk`` subjects, bands, senders or link keys) between two yields, so a driver
        can let requests run in between (``SignalStage``'s background task).

        Requests applied between slices land as they would after a one-shot ``maintain``
        at ``now``: a subject, band, family sender or link the pass will forget but has not
        reached yet is forgotten when a request touches it (``_swept``, and the indexes'
        own checks). The account and behavioural clusters are rebuilt aside, and the usage of
        account clusters that changed recounted aside, each swapped in by one short step;
        see docs/performance.md for what each slice costs.
        """
        if self._running is not None:
            raise RuntimeError("a maintenance pass is already running")
        work = self._maintenance(now, chunk)
        self._running = work
        return work

    def _maintenance(self, now: float, chunk: int) -> Generator[None, None, None]:
        self._pass += 1
        self._pass_at = now
        self.maintenance_due = False
        self._last_link = None
        try:
            # An evicted subject active again since is in ``_subjects`` and stays in the
            # indexes.
            forget = frozenset(s for s in self._evicted if s not in self._subjects)
            self._evicted = set()
            for index in (self.families, self.behaviour, self.clusters):
                index.begin_pass(now, forget)
            subjects = self._subjects
            # The underlying dict's keys, not the OrderedDict's linked list: the same
            # subjects, 0.9 ms at 100,000 instead of 27 ms once requests have reordered it.
            names = list(dict.keys(subjects))
            yield
            for start in range(0, len(names), chunk):
                for subject in names[start : start + chunk]:
                    usage = subjects.get(subject)
                    if usage is not None and usage.swept != self._pass:
                        self._sweep(subject, usage, now)
                yield
            yield from self.families.maintenance(now, forget, chunk)
            yield from self.behaviour.prune(now, forget, chunk)
            yield from self.clusters.prune(now, forget, chunk)
            self._pass_at = None
            yield from self.behaviour.regrouping(chunk)
            yield from self.shift.maintenance(now, self.behaviour.find, forget, chunk)
            yield from self._regroup_clusters(now, chunk)
        finally:
            for index in (self.families, self.behaviour, self.clusters):
                index.end_pass()
            self._pass_at = None
            self._running = None

    def _regroup_clusters(self, now: float, chunk: int) -> Generator[None, None, None]:
        """Rebuild the account clusters aside and recount the usage of those that changed,
        in steps of ``chunk`` (keys, unions, clusters or members); the last step swaps the
        new clusters and their usage in together (``_Recount``).

        A cluster that kept exactly its members keeps its counters; one that changed is
        recounted from its members' own usage, including one that only lost members: its
        counters hold what the departed did while members (and, while a pass runs, what they
        do until it ends).
        """
        regroup = Regroup(self.clusters, groups=True)
        recount = _Recount(self, regroup, now)
        try:
            yield from regroup.build(chunk)
            self._recounting = recount
            roots = regroup.fresh.roots()
            yield
            for start in range(0, len(roots), chunk):
                recount.take(chunk)
                for root in roots[start : start + chunk]:
                    recount.decide(root)
                yield
            while True:
                recount.take(chunk)
                recount.settle(chunk)
                recount.count(chunk)
                if not recount.busy():
                    break
                yield
            regroup.swap()
            self._cluster_usage = recount.usage
        finally:
            regroup.close()
            self._recounting = None

    def stats(self) -> dict[str, int]:
        """Sizes, for /healthz and the docs' cost figures."""
        return {
            "subjects": len(self._subjects),
            "evicted_subjects": len(self._evicted),
            "clusters": len(self._cluster_usage),
            "link_keys": len(self.clusters),
            "fingerprints": len(self._fingerprints),
            "behaviour_keys": len(self.behaviour),
            **self.families.stats(),
            **self.shift.stats(),
        }
