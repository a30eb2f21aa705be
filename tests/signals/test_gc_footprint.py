"""The signal state's footprint for the cyclic garbage collector: a few tracked objects per
subject, so a full collection (which stops the event loop while it visits every tracked
object) stays short at hundreds of thousands of subjects, instead of taking seconds."""

from __future__ import annotations

import gc
import random

from gatekeeper.signals import Observation, SignalState
from gatekeeper.signals.families import FamilyIndex
from gatekeeper.signals.fingerprint import RequestFeatures

#: Tracked objects per subject that has used every signal: 11 (its usage: the object, its
#: counters' array, its template tally's object, stamps and bucket list; the fingerprint;
#: the model mix and its two tallies' objects and arrays), 31 before the counters became
#: arrays. Each costs a full collection about 0.3-1 µs at 100,000 subjects.
MAX_TRACKED_PER_SUBJECT = 12

WORDS = ["apple", "river", "seven", "compile", "quickly", "parse", "blue", "window"]
BANDS = [
    tuple(FamilyIndex.keys(" ".join(random.Random(i).choices(WORDS, k=4 + i % 5))))
    for i in range(6)
]
FEATURES = RequestFeatures(reasoning=True, prompt_bin=6, max_tokens=512, ua_family="x")


def test_a_subject_costs_the_garbage_collector_a_few_tracked_objects() -> None:
    subjects = 2000
    state = SignalState({"10m": 600.0, "1h": 3600.0, "24h": 86400.0}, "1h")
    rng = random.Random(3)
    names = [f"s{i:05d}" for i in range(subjects)]
    links = [(f"payment:{rng.randrange(subjects)}", f"org:{i // 3}") for i in range(subjects)]
    gc.collect()
    before = len(gc.get_objects())
    start = 1_700_000_000.0
    for k in range(subjects * 12):
        at = start + 3600 * k / (subjects * 12)
        i = rng.randrange(subjects)
        state.apply(
            Observation(
                at, names[i], requests=1, reasoning_requests=1, template=f"t{k % 7}",
                links=links[i], bands=BANDS[k % len(BANDS)], features=FEATURES,
                age_days=float(i % 90), model=("m1", "m2")[k % 11 == 0],
            )
        )  # fmt: skip
        state.apply(Observation(at, names[i], tokens=rng.randint(1, 900), reasoning_tokens=50))
    gc.collect()
    tracked = len(gc.get_objects()) - before
    assert state.stats()["subjects"] > 0.99 * subjects
    assert state.stats()["shift_subjects"] > 0.99 * subjects
    assert tracked / subjects <= MAX_TRACKED_PER_SUBJECT, (tracked / subjects, state.stats())
