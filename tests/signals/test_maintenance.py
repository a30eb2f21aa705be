"""Maintenance in slices: a pass with requests applied between its slices leaves the state a
one-shot ``maintain`` at the pass's start, followed by the same requests, leaves."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from gatekeeper.signals import Observation, SignalState
from gatekeeper.signals.families import FamilyIndex
from gatekeeper.signals.fingerprint import RequestFeatures
from gatekeeper.signals.stage import run_maintenance

WINDOWS = {"10m": 600.0, "1h": 3600.0}
WORDS = [
    "apple",
    "river",
    "seven",
    "compile",
    "quickly",
    "parse",
    "blue",
    "window",
    "ledger",
    "orbit",
    "salt",
    "prime",
]
#: Prompt families' band keys: prompts of 3 to 9 words from a small vocabulary, so that
#: some share band keys with others (one LSH band in common joins their families).
BANDS = [
    tuple(FamilyIndex.keys(" ".join(random.Random(i).choices(WORDS, k=3 + i % 7))))
    for i in range(40)
]
FEATURES = [
    RequestFeatures(reasoning=True, prompt_bin=6, max_tokens=512),
    RequestFeatures(reasoning=False, prompt_bin=4, max_tokens=256, stream=True),
    RequestFeatures(reasoning=True, prompt_bin=7, max_tokens=1024, tools="ab12"),
]


def one_shot(s: SignalState, now: float) -> None:
    """``SignalState.maintain`` as it was before it ran in slices (the reference)."""
    s._last_link = None
    for subject in [n for n, usage in s._subjects.items() if usage.idle(now)]:
        del s._subjects[subject]
        s._fingerprints.pop(subject, None)
    forget = {n for n in s._evicted if n not in s._subjects}
    s._evicted = set()
    s.families.maintain(now, forget)
    s.behaviour.rebuild(now, forget)
    for usage in s._subjects.values():
        usage.templates.compact(now)
    old_roots = dict(s._cluster_usage)
    old_sizes = {root: s.clusters.size(root) for root in old_roots}
    previous = {n: s.clusters.find(n) for n in s.clusters.linked_subjects()}
    groups = s.clusters.rebuild(now, forget)
    claimed: dict[str, int] = {}
    for members in groups.values():
        for old in {previous.get(m, m) for m in members}:
            claimed[old] = claimed.get(old, 0) + 1
    s._cluster_usage = {}
    for root, members in groups.items():
        olds = {previous.get(m, m) for m in members}
        old = next(iter(olds))
        # Changed with the passes: a cluster that lost members is recounted (it kept its
        # counters before, less the members who had gone idle).
        if len(olds) == 1 and claimed[old] == 1 and old in old_roots:
            kept = len(members) == old_sizes[old]
        else:
            kept = False
        if kept:
            s._cluster_usage[root] = old_roots[old]
            old_roots[old].templates.compact(now)
            continue
        usage = s._new_usage()
        for member in members:
            own = s._subjects.get(member)
            if own is not None:
                usage.merge(own)
        s._cluster_usage[root] = usage


def observation(rng: random.Random, at: float, subjects: int, links: bool) -> Observation:
    """A request or a response of a random subject. Before 3,600 s the link keys and prompt
    families come from one part of their pools and after from another (overlapping), so
    that by 7,300 s some are stale; from 7,300 s on (during the pass), both parts."""
    late = at >= 3600.0 if at < 7300.0 else rng.random() < 0.5
    # s60 to s79 are active only in the first hour: idle by 7,300 s.
    subject = f"s{rng.randrange(60 if late and at < 7300.0 else subjects)}"
    keys: tuple[str, ...] = ()
    if links and rng.random() < 0.7:
        pool = [
            f"payment:{rng.randrange(8) + 6 * late}",
            f"org:{rng.randrange(4) + 3 * late}",
            f"network:{rng.randrange(20)}",
        ]
        keys = tuple(rng.sample(pool, rng.randint(1, 2)))
    if rng.random() < 0.2:
        return Observation(at, subject, tokens=rng.randint(1, 900), reasoning_tokens=50)
    return Observation(
        at,
        subject,
        requests=1,
        reasoning_requests=rng.randint(0, 1),
        template=f"t{rng.randrange(5)}",
        links=keys,
        bands=BANDS[rng.randrange(25) + 15 * late],
        features=rng.choice(FEATURES),
        age_days=float(rng.choice((1, 3, 20, 200))),
    )


def warmed(seed: int, max_subjects: int) -> SignalState:
    """A state with history over two hours: some of it idle, stale or evicted by 7,300 s."""
    rng = random.Random(seed)
    s = SignalState(WINDOWS, "1h", buckets=12, max_subjects=max_subjects)
    for i in range(900):
        s.apply(observation(rng, 7200.0 * i / 900, 80, links=True))
    return s


def snapshot(s: SignalState, now: float, cluster_usage: bool = True) -> dict[str, Any]:
    """Everything the policy can read of the state, and the indexes' contents."""
    out: dict[str, Any] = {
        "stats": s.stats(),
        "subjects": sorted(s._subjects),
        "fingerprints": {k: (f.n, f.last, f.reasoning) for k, f in s._fingerprints.items()},
        "evicted": sorted(s._evicted),
        "bands": list(s.families._bands.items()),
        "families": {
            name: (dict(f.members), list(f.by_age)) for name, f in s.families._families.items()
        },
    }
    for name, index in (("clusters", s.clusters), ("behaviour", s.behaviour)):
        members = {k: dict(v) for k, v in index._members.items() if v}
        every = sorted({n for v in members.values() for n in v})
        out[name] = {
            "members": members,
            "roots": {n: index.find(n) for n in every},
            "sizes": {n: index.size(index.find(n)) for n in every},
            "by_age": {n: index.by_age(index.find(n)) for n in every},
            "band": dict(index._band),
        }
    reads = {}
    for i in range(90):
        subject = f"s{i}"
        own, cluster, repetition = s.read_documents(
            subject, "t1", ("payment:1", "org:2"), now, s.families.assign(BANDS[0], now)
        )
        if not cluster_usage and cluster["size"] > 1:
            cluster = {k: v for k, v in cluster.items() if k in ("id", "size", "by_age")}
            repetition = -1.0  # the larger of the subject's and the cluster's
        reads[subject] = (own, cluster, repetition, s.read_behaviour(subject))
    out["reads"] = reads
    out["family_reads"] = {name: s.read_family(name) for name in s.families._families}
    return out


def interleaved(s: SignalState, now: float, requests: list[Observation], slices: int) -> int:
    """Run a pass in the smallest slices, applying the requests between them, spread over a
    pass of about ``slices`` slices; the number of slices it took."""
    pending = list(requests)
    done = 0
    for _ in s.maintenance(now, chunk=3):
        done += 1
        while pending and len(pending) > len(requests) * (1 - done / slices):
            s.apply(pending.pop(0))
    for obs in pending:
        s.apply(obs)
    return done


def slices_of(s: SignalState, now: float) -> int:
    return sum(1 for _ in s.maintenance(now, chunk=3))


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("links", [False, True])
@pytest.mark.parametrize("bound", [60, 1000])
def test_a_pass_with_requests_between_slices_equals_a_one_shot_then_the_requests(
    seed: int, links: bool, bound: int
) -> None:
    now = 7300.0
    rng = random.Random(1000 + seed)
    # Requests during the pass: old, stale, evicted and new subjects, at or after ``now``.
    requests = [observation(rng, now + 0.5 * i, 90, links) for i in range(150)]
    # With the bound at 60, evictions run ``maintain`` at once now and then (in the middle
    # of the pass: it finishes it first).
    reference = warmed(seed, max_subjects=bound)
    sliced = warmed(seed, max_subjects=bound)
    assert snapshot(reference, now) == snapshot(sliced, now)
    one_shot(reference, now)
    for obs in requests:
        reference.apply(obs)
    slices = interleaved(sliced, now, requests, slices_of(warmed(seed, bound), now))
    assert slices > 40  # the requests really landed between slices
    later = now + 100.0
    assert snapshot(sliced, later) == snapshot(reference, later)


@pytest.mark.parametrize("seed", range(6))
def test_maintain_equals_the_one_shot_reference(seed: int) -> None:
    reference = warmed(seed, max_subjects=60)
    state = warmed(seed, max_subjects=60)
    for now in (3000.0, 7300.0, 9000.0, 20000.0):
        one_shot(reference, now)
        state.maintain(now)
        assert snapshot(state, now) == snapshot(reference, now)


def test_maintain_finishes_a_running_pass_first() -> None:
    reference = warmed(3, max_subjects=1000)
    state = warmed(3, max_subjects=1000)
    work = state.maintenance(7300.0, chunk=3)
    for _ in range(10):
        next(work)
    with pytest.raises(RuntimeError):
        state.maintenance(7300.0)
    state.maintain(7300.0)  # finishes the running pass, then runs one of its own
    assert list(work) == []
    one_shot(reference, 7300.0)
    one_shot(reference, 7300.0)
    assert snapshot(state, 7300.0) == snapshot(reference, 7300.0)


def test_the_background_driver_bounds_slices_and_lets_requests_run() -> None:
    state = warmed(5, max_subjects=1000)
    reference = warmed(5, max_subjects=1000)
    rng = random.Random(5)
    requests = [observation(rng, 7300.0 + i, 90, links=False) for i in range(40)]

    async def run() -> tuple[int, float, float]:
        async def traffic() -> None:
            for obs in requests:
                state.apply(obs)
                await asyncio.sleep(0)

        task = asyncio.create_task(traffic())
        # A budget of zero: every step is a slice of its own.
        result = await run_maintenance(state, 7300.0, slice_seconds=0.0)
        await task
        return result

    slices, longest, total = asyncio.run(run())
    assert slices >= 5 and 0 < longest <= total
    one_shot(reference, 7300.0)
    for obs in requests:
        reference.apply(obs)
    assert snapshot(state, 7400.0) == snapshot(reference, 7400.0)
    assert state._running is None and state._pass_at is None


def test_a_cancelled_pass_leaves_no_hooks_behind() -> None:
    state = warmed(2, max_subjects=1000)

    async def run() -> None:
        task = asyncio.create_task(run_maintenance(state, 7300.0, slice_seconds=0.0))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert state._running is None and state._pass_at is None
    assert state.clusters._cutoff == float("-inf")
    assert state.families._cutoff == float("-inf")
    state.maintain(7300.0)  # a new pass runs


def test_evictions_ask_a_background_task_for_a_pass_instead_of_running_one() -> None:
    state = SignalState(WINDOWS, "1h", buckets=12, max_subjects=8)
    state.background = True
    for i in range(10):
        state.apply(Observation(float(i), f"n{i}", requests=1, links=("payment:1",)))
    # Two evicted: a quarter of the bound; no pass ran on the request path.
    assert state.maintenance_due and state.stats()["evicted_subjects"] == 2
    assert state.read("n9", None, (), 10.0)[1].size == 10  # still in the cluster
    slices, _, _ = asyncio.run(run_maintenance(state, 10.0))
    assert slices >= 1 and not state.maintenance_due
    assert state.stats()["evicted_subjects"] == 0
    assert state.read("n9", None, (), 10.0)[1].size == 8


def test_the_stage_task_runs_an_early_pass_when_evictions_ask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gatekeeper.signals import MemorySignalStore, SignalStage, stage

    monkeypatch.setattr(stage, "MAINTENANCE_POLL", 0.01)
    state = SignalState(WINDOWS, "1h", buckets=12, max_subjects=8)
    signals = SignalStage(MemorySignalStore(state))

    async def run() -> None:
        await signals.start()
        assert state.background  # a task, not the request path, runs the passes
        now = time.time()
        for i in range(10):
            state.apply(Observation(now, f"n{i}", requests=1, links=("payment:1",)))
        assert state.maintenance_due
        for _ in range(200):  # the main window's bucket is 5 minutes: it does not wait
            await asyncio.sleep(0.01)
            if not state.maintenance_due and state.stats()["evicted_subjects"] == 0:
                break
        assert state.stats()["evicted_subjects"] == 0
        assert state.read("n9", None, (), now)[1].size == 8
        await signals.aclose()

    asyncio.run(run())


def linked(rng: random.Random, at: float, late: bool) -> Observation:
    """A request with link keys that make many small account clusters: each subject's org
    (s0 to s59 in threes before 3,600 s, everyone in fours after, so that at 7,300 s the
    first links are stale and the clusters they made split, and s60 to s89 keep theirs),
    now and then a payment key shared at random that bridges two clusters (often from
    7,300 s: during the pass)."""
    i = rng.randrange(90) if late else rng.randrange(60)
    keys = [f"org:{i // 4 + 100}" if late else f"org:{i // 3}"]
    if rng.random() < (0.3 if at >= 7300.0 else 0.03):
        keys.append(f"payment:{rng.randrange(40)}")
    return Observation(
        at,
        f"s{i}",
        requests=1,
        tokens=rng.randint(1, 900),
        template=f"t{rng.randrange(5)}",
        links=tuple(keys),
        age_days=float(rng.choice((1, 3, 20, 200))),
    )


def clustered(seed: int) -> SignalState:
    rng = random.Random(seed)
    s = SignalState(WINDOWS, "1h", buckets=12)
    for i in range(600):
        at = 7200.0 * i / 600
        s.apply(linked(rng, at, at >= 3600.0))
    return s


def account_steps(s: SignalState, now: float) -> int:
    """How many steps of a pass at ``now`` (chunk 3) come after the account clusters'
    rebuild began."""
    steps = 0
    for _ in s.maintenance(now, chunk=3):
        steps += s.clusters._journal is not None
    return steps


@pytest.mark.parametrize("seed", range(30))
def test_requests_during_the_account_clusters_rebuild_land_as_after_a_one_shot(
    seed: int,
) -> None:
    """Requests between every step of the account clusters' rebuild and recount (links
    that join clusters the pass is splitting, new members, stale links used again) leave
    what a one-shot ``maintain`` followed by the same requests leaves."""
    now = 7300.0
    rng = random.Random(500 + seed)
    requests = [linked(rng, now + 0.1 * i, rng.random() < 0.5) for i in range(120)]
    steps = account_steps(clustered(seed), now)
    reference, state = clustered(seed), clustered(seed)
    one_shot(reference, now)
    for obs in requests:
        reference.apply(obs)
    pending = list(requests)
    between = 0
    for _ in state.maintenance(now, chunk=3):
        if state.clusters._journal is not None:
            for _ in range(1 + len(pending) // steps):
                if pending:
                    state.apply(pending.pop(0))
                    between += 1
    for obs in pending:
        state.apply(obs)
    assert between > len(requests) // 2  # most landed between the rebuild's steps
    later = now + 100.0
    assert snapshot(state, later) == snapshot(reference, later)


def test_a_request_during_the_account_clusters_rebuild_sees_old_or_new_clusters() -> None:
    """Between the steps of the account clusters' rebuild, every read sees the clusters
    (ids, sizes, age bands and usage) from before the pass until one step swaps them all
    for the new ones."""
    now = 7300.0
    state = clustered(4)

    def reads() -> dict[str, Any]:
        out = {}
        for i in range(90):
            _, cluster, _ = state.read_documents(f"s{i}", "t1", (), now)
            out[f"s{i}"] = cluster
        return out

    work = state.maintenance(now, chunk=3)
    for _ in work:
        if state.clusters._journal is not None:
            break
    old = reads()
    seen = [old]
    for _ in work:
        seen.append(reads())
    new = reads()
    seen.append(new)
    assert old != new and len(seen) > 20
    swapped = seen.index(new)
    assert all(read == old for read in seen[:swapped])
    assert all(read == new for read in seen[swapped:])


def test_a_pass_abandoned_during_the_account_recount_leaves_the_old_clusters() -> None:
    """Closing the pass in the middle of the account clusters' recount (a cancelled
    background task) leaves the clusters it started from and no hooks; the next pass then
    gives what a one-shot pass gives."""
    now = 7300.0
    state, reference = clustered(6), clustered(6)

    def clusters() -> dict[str, Any]:
        out = {}
        for i in range(90):
            cluster = state.read_documents(f"s{i}", None, (), now)[1]
            out[f"s{i}"] = {k: cluster[k] for k in ("id", "size", "subjects_by_age")}
        return out

    before = clusters()
    work = state.maintenance(now, chunk=3)
    for _ in work:
        if state._recounting is not None and state._recounting.work:
            break
    assert state._recounting is not None  # stopped with members still to count
    work.close()
    assert state._recounting is None and state.clusters._journal is None
    assert state._running is None
    assert clusters() == before
    state.maintain(now)
    assert clusters() != before  # the pass does change them
    one_shot(reference, now)
    assert snapshot(state, now) == snapshot(reference, now)
