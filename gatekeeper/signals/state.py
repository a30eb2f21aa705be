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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gatekeeper.contract import ClusterSignals, SubjectSignals
from gatekeeper.signals.clusters import ClusterIndex, cluster_id
from gatekeeper.signals.families import FamilyIndex, age_band
from gatekeeper.signals.fingerprint import Fingerprint, RequestFeatures, behaviour_keys
from gatekeeper.signals.shift import ShiftIndex
from gatekeeper.signals.windows import RollingCounts, RollingTally

USAGE_METRICS = (
    "requests",
    "tokens",
    "reasoning_requests",
    "reasoning_tokens",
    "refused",
    "reasoning_exposed",
    "repeated",
)
_REQUESTS, _REASONING, _EXPOSED, _REPEATED = 0, 2, 5, 6
#: Account-age band edges (days) of the ``subjects_by_age`` counts, unless configured.
DEFAULT_AGE_EDGES = (7.0, 30.0, 90.0)


@dataclass(frozen=True, slots=True)
class Observation:
    """One thing a gateway saw about a subject, as applied and replicated.

    A request is observed twice: when the policy has decided (``requests = 1``, whether it
    asked for reasoning, was refused, repeated one of the subject's prompt families, its
    template, links, prompt-family band keys, behavioural features and the account's age) and,
    if it ran, after the response (the tokens it used, the reasoning tokens the client saw and
    ``reasoning_exposed = 1`` when it saw any).
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
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in amounts):
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


class _Usage:
    """One subject's or one cluster's counters."""

    __slots__ = ("counts", "templates")

    def __init__(self, windows: Sequence[float], main: float, buckets: int) -> None:
        width = len(USAGE_METRICS)
        self.counts = [RollingCounts(seconds, buckets, width) for seconds in windows]
        self.templates = RollingTally(main, buckets)

    def add(self, obs: Observation, family: str | None = None) -> None:
        amounts = obs.amounts
        for counter in self.counts:
            counter.add(obs.at, amounts)
        if obs.template is not None:
            self.templates.add(obs.at, obs.template)
        if family is not None:
            # Family ids ("f-...") and template hashes (hex) never collide: one tally.
            self.templates.add(obs.at, family)

    def merge(self, other: _Usage) -> None:
        for mine, theirs in zip(self.counts, other.counts, strict=True):
            mine.merge(theirs)
        self.templates.merge(other.templates)

    def idle(self, now: float) -> bool:
        return all(counter.idle(now) for counter in self.counts)


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
        self.families = FamilyIndex(self._main_seconds, self.age_edges)
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
        self._subjects: dict[str, _Usage] = {}
        #: Usage of clusters of two or more subjects, by root.
        self._cluster_usage: dict[str, _Usage] = {}

    @property
    def maintenance_interval(self) -> float:
        """How often ``maintain`` should run: one bucket of the main window."""
        return self._main_seconds / self._buckets

    def _new_usage(self) -> _Usage:
        return _Usage(self._seconds, self._main_seconds, self._buckets)

    def age_band(self, age_days: float | None) -> int:
        """The index of the first age edge ``age_days`` is below."""
        return age_band(age_days, self.age_edges)

    def link(
        self, subject: str, links: Sequence[str], at: float, age_days: float | None = None
    ) -> None:
        """Record ``subject``'s link keys, merging clusters they join."""
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
        usage = self._subjects.get(obs.subject)
        if usage is None:
            usage = self._subjects[obs.subject] = self._new_usage()
        usage.add(obs, family)
        cluster = self._cluster_usage.get(self.clusters.find(obs.subject))
        if cluster is not None:
            cluster.add(obs, family)

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
        root = self.behaviour.find(subject)
        fingerprint = self._fingerprints.get(subject)
        return {
            "id": cluster_id(root) if root != subject or self.behaviour.size(root) > 1 else None,
            "size": self.behaviour.size(root),
            "subjects_by_age": dict(zip(self._age_names, self.behaviour.by_age(root))),  # noqa: B905
            "fingerprinted": fingerprint is not None
            and fingerprint.n >= self.behaviour_min_requests,
        }

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
        """``read`` as the JSON the policy sees (``input.signals.subject`` and ``.cluster``).

        Exactly what dumping the ``SubjectSignals`` and ``ClusterSignals`` of ``read`` gives,
        field for field and in the models' order, without building them: building and dumping
        the models made a read cost 19 µs; this costs 7 µs (a cluster of one is read once).
        """
        own = self._subjects.get(subject)
        root = self.clusters.find(subject)
        size = self.clusters.size(root)
        subject_doc = self._usage_fields(own, template, family, now)
        if size > 1:
            cluster_doc = self._usage_fields(self._cluster_usage.get(root), template, family, now)
        else:
            # A cluster of one (most subjects) has the subject's own usage: read it once.
            cluster_doc = {k: dict(v) if isinstance(v, dict) else v for k, v in subject_doc.items()}
        subject_doc["account_age_days"] = None
        cluster_doc["id"] = cluster_id(root)
        cluster_doc["size"] = size
        cluster_doc["linked_by"] = self.clusters.shared(subject, links)
        cluster_doc["subjects_by_age"] = dict(zip(self._age_names, self.clusters.by_age(root)))  # noqa: B905
        repetition = 0.0
        if template is not None:
            main = self.names[self._main]
            for doc in (subject_doc, cluster_doc):
                seen = doc["requests"].get(main, 0)
                share = (doc["template_count"] + 1) / (seen + 1)
                repetition = max(repetition, min(1.0, share))
        return subject_doc, cluster_doc, round(repetition, 4)

    def _usage_fields(
        self, usage: _Usage | None, template: str | None, family: str | None, now: float
    ) -> dict[str, Any]:
        """The ``UsageSignals`` fields of ``usage``, in the model's order (JSON-ready)."""
        names = self.names
        if usage is None:
            fields: dict[str, Any] = {name: dict.fromkeys(names, 0) for name in USAGE_METRICS}
            fields["reasoning_share"] = 0.0
            fields["exposed_share"] = 0.0
            fields["repeat_share"] = 0.0
            fields["template_count"] = 0
            fields["family_count"] = 0
            return fields
        per_window = [counter.totals(now) for counter in usage.counts]
        fields = {}
        # Lengths are equal by construction (a total per metric, a name per window): zip's
        # strict keyword costs 0.3 µs a call on Python 3.11, seven calls a read.
        for metric, column in zip(USAGE_METRICS, zip(*per_window)):  # noqa: B905
            fields[metric] = dict(zip(names, column))  # noqa: B905
        main_totals = per_window[self._main]
        requests = main_totals[_REQUESTS]
        if requests > 0:
            fields["reasoning_share"] = round(main_totals[_REASONING] / requests, 4)
            fields["exposed_share"] = round(min(1.0, main_totals[_EXPOSED] / requests), 4)
            fields["repeat_share"] = round(main_totals[_REPEATED] / requests, 4)
        else:
            fields["reasoning_share"] = fields["exposed_share"] = fields["repeat_share"] = 0.0
        fields["template_count"] = usage.templates.count(now, template) if template else 0
        fields["family_count"] = usage.templates.count(now, family) if family else 0
        return fields

    def maintain(self, now: float) -> None:
        """Forget idle subjects and expired links; rebuild the clusters (off the hot path)."""
        for subject in [s for s, usage in self._subjects.items() if usage.idle(now)]:
            del self._subjects[subject]
            self._fingerprints.pop(subject, None)
        self.families.maintain(now)
        self.behaviour.rebuild(now)
        self.shift.maintain(now, self.behaviour.find)
        for usage in self._subjects.values():
            usage.templates.compact(now)
        old_roots = {root: self._cluster_usage[root] for root in self._cluster_usage}
        previous = {s: self.clusters.find(s) for s in self.clusters.linked_subjects()}
        groups = self.clusters.rebuild(now)
        # A cluster that kept its members (less those who went idle) keeps its counters; one
        # that split is recounted from its members' own usage.
        claimed: dict[str, int] = {}
        for members in groups.values():
            for old in {previous.get(m, m) for m in members}:
                claimed[old] = claimed.get(old, 0) + 1
        self._cluster_usage = {}
        for root, members in groups.items():
            olds = {previous.get(m, m) for m in members}
            old = next(iter(olds))
            if len(olds) == 1 and claimed[old] == 1 and old in old_roots:
                self._cluster_usage[root] = old_roots[old]
                old_roots[old].templates.compact(now)
                continue
            usage = self._new_usage()
            for member in members:
                own = self._subjects.get(member)
                if own is not None:
                    usage.merge(own)
            self._cluster_usage[root] = usage

    def stats(self) -> dict[str, int]:
        """Sizes, for /healthz and the docs' cost figures."""
        return {
            "subjects": len(self._subjects),
            "clusters": len(self._cluster_usage),
            "link_keys": len(self.clusters),
            "fingerprints": len(self._fingerprints),
            "behaviour_keys": len(self.behaviour),
            **self.families.stats(),
            **self.shift.stats(),
        }
