"""Model shift: how much of a subject's recent traffic moved to the model it is calling now.

When a model is released, a harvesting campaign moves its accounts to it within hours (the
reports of distillation campaigns name one lab that moved half its traffic to a new model
within 24 hours of its release); an honest user tries the new model a little. The signal is
the subject's share of requests on this request's model in a *recent* window against its
share in the *prior* one (the longer window less the recent one), from two small per-subject
tallies of requests by model (``SmallTally``, the windows' buckets): O(1) to add, O(buckets)
to read.

(With one window for both, there is no prior history: no subject ever moves.)

A subject has *moved* to a model when, with at least ``min_prior`` requests of history and
``min_recent`` in the recent window, its recent share on the model reached ``min_share`` while
its prior share was below it (one request to a new model after a quiet spell is not a move). Moved
subjects are counted per model and per behavioural cluster (the fingerprint index's roots), so
"20 accounts that behave alike all moved to the new model this hour" is one O(1) read. The
counts are rebuilt with the current cluster roots by ``maintain`` and kept up to date between
rebuilds as subjects move.

Whether the model is new is the policy's to say (its release dates, config/launch): this
module measures the move, not the release.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from collections.abc import Set as AbstractSet
from typing import Any

from gatekeeper.input_document import shift_document
from gatekeeper.signals.windows import SmallTally

#: The tally key of every request (the subject's total), never a model name.
_ALL = "\x00all"
#: ``_Mix.only`` before the first request (any model name, even "", may follow).
_NO_MODEL_YET = "\x00none"


class _Mix:
    """One subject's requests by model in the recent and the prior (longer) window.

    Most subjects call one model: while they do, its counts are the totals' (``only``), and
    only the totals are kept. A second model gives the first its own key, copied from the
    totals, and from then on every model has one.
    """

    __slots__ = ("only", "prior", "read", "recent")

    def __init__(self, recent: float, prior: float, buckets: int) -> None:
        self.recent = SmallTally(recent, buckets)
        self.prior = SmallTally(prior, buckets)
        #: The one model called so far (``_NO_MODEL_YET`` before the first; ``None`` once
        #: there were two).
        self.only: str | None = _NO_MODEL_YET
        #: The last ``ShiftIndex.read``'s model, time and shares: the request's ``add`` at the
        #: same time finds the same (nothing was added since, or ``add`` cleared it).
        self.read: tuple[str, float, tuple[float, float, int, int]] | None = None

    def add(self, at: float, model: str) -> None:
        self.read = None
        only = self.only
        if only == _NO_MODEL_YET:
            self.only = only = model
        elif only is not None and only != model:
            for tally in (self.recent, self.prior):
                tally.copy_key(_ALL, only)
            self.only = only = None
        for tally in (self.recent, self.prior):
            if only is None:
                tally.add(at, model)
            tally.add(at, _ALL)

    def counts(self, now: float, model: str) -> tuple[int, int, int, int]:
        """(recent on model, recent total, prior on model, prior total), the prior window
        without the recent one."""
        recent_all, long_all = self.recent.count(now, _ALL), self.prior.count(now, _ALL)
        only = self.only
        if only is None:
            recent_on, long_on = self.recent.count(now, model), self.prior.count(now, model)
        elif only == model:
            recent_on, long_on = recent_all, long_all
        else:
            recent_on = long_on = 0
        return recent_on, recent_all, max(0, long_on - recent_on), max(0, long_all - recent_all)

    def idle(self, now: float) -> bool:
        return self.prior.idle(now)


class ShiftIndex:
    """Per-subject model mixes, and the subjects that moved to each model."""

    def __init__(
        self,
        recent_seconds: float,
        prior_seconds: float,
        buckets: int = 12,
        *,
        min_share: float = 0.5,
        min_prior: int = 5,
        min_recent: int = 3,
    ) -> None:
        if prior_seconds < recent_seconds:
            raise ValueError("the prior window must not be shorter than the recent one")
        self.recent_seconds = recent_seconds
        self.prior_seconds = prior_seconds
        self._buckets = buckets
        self.min_share = min_share
        self.min_prior = min_prior
        self.min_recent = min_recent
        self._mixes: dict[str, _Mix] = {}
        #: model -> subject -> when it was last seen moved to the model
        self._moved: dict[str, dict[str, float]] = {}
        #: (model, behavioural cluster root) -> subjects of the cluster moved to the model
        self._by_root: dict[tuple[str, str], int] = {}

    def _shares(self, mix: _Mix, now: float, model: str) -> tuple[float, float, int, int]:
        """(recent share with this request, prior share, prior requests, recent requests
        with this one)."""
        recent_on, recent_all, prior_on, prior_all = mix.counts(now, model)
        recent = (recent_on + 1) / (recent_all + 1)
        prior = prior_on / prior_all if prior_all else 0.0
        return recent, prior, prior_all, recent_all + 1

    def add(self, subject: str, model: str, at: float, root: Callable[[str], str]) -> None:
        """Count a request of ``subject`` to ``model``; ``root`` finds its behavioural
        cluster's root (called only when the subject moves)."""
        mix = self._mixes.get(subject)
        if mix is None:
            mix = _Mix(self.recent_seconds, self.prior_seconds, self._buckets)
            self._mixes[subject] = mix
        # The shares as this request found them (the request counted in the recent one):
        # those its inspection read, when nothing was added to the subject since.
        read = mix.read
        if read is not None and read[0] == model and read[1] == at:
            recent, prior, history, count = read[2]
        else:
            recent, prior, history, count = self._shares(mix, at, model)
        mix.add(at, model)
        if (
            history >= self.min_prior
            and count >= self.min_recent
            and recent >= self.min_share > prior
        ):
            moved = self._moved.setdefault(model, {})
            if subject not in moved:
                key = (model, root(subject))
                self._by_root[key] = self._by_root.get(key, 0) + 1
            moved[subject] = at

    def read(self, subject: str, model: str | None, now: float, root: str) -> dict[str, Any]:
        """``input.signals.model_shift`` for a request of ``subject`` to ``model``."""
        if not model:
            return shift_document()
        mix = self._mixes.get(subject)
        if mix is None:
            recent, prior, history = 1.0, 0.0, 0
        else:
            shares = self._shares(mix, now, model)
            mix.read = (model, now, shares)
            recent, prior, history, _ = shares
        moved = self._moved.get(model)
        return shift_document(
            model,
            round(recent, 4),
            round(prior, 4),
            history,
            moved is not None and subject in moved,
            self._by_root.get((model, root), 0),
            len(moved) if moved is not None else 0,
        )

    def maintain(
        self, now: float, root: Callable[[str], str], forget: AbstractSet[str] = frozenset()
    ) -> None:
        """``maintenance`` at once."""
        for _ in self.maintenance(now, root, forget):
            pass

    def maintenance(
        self,
        now: float,
        root: Callable[[str], str],
        forget: AbstractSet[str] = frozenset(),
        chunk: int = 64,
    ) -> Generator[None, None, None]:
        """Forget idle subjects and the subjects in ``forget`` (evicted from the signal state),
        ``chunk`` at a time between yields; then, at once, moves older than the prior window,
        and recount the moved subjects per behavioural cluster with the current roots (the
        moved subjects are few: only those that changed models)."""
        mixes = self._mixes
        names = list(mixes)
        for start in range(0, len(names), chunk):
            for subject in names[start : start + chunk]:
                mix = mixes.get(subject)
                if mix is not None and (mix.idle(now) or subject in forget):
                    del mixes[subject]
            yield
        oldest = now - self.prior_seconds
        by_root: dict[tuple[str, str], int] = {}
        for model in list(self._moved):
            moved = {s: at for s, at in self._moved[model].items() if at > oldest}
            if not moved:
                del self._moved[model]
                continue
            self._moved[model] = moved
            for subject in moved:
                key = (model, root(subject))
                by_root[key] = by_root.get(key, 0) + 1
        self._by_root = by_root

    def stats(self) -> dict[str, int]:
        return {
            "shift_subjects": len(self._mixes),
            "shift_moved": sum(len(m) for m in self._moved.values()),
        }
