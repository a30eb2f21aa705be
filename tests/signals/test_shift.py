"""The model-shift signal: a subject (and a behavioural cluster) moving to a new model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gatekeeper.contract import Decision, Network, Subject
from gatekeeper.signals import MemorySignalStore, SignalStage, SignalState
from gatekeeper.signals.shift import ShiftIndex
from gatekeeper.signals.state import Observation

NET = Network(client_ip="203.0.113.9", asn=64500)


def alone(subject: str) -> str:
    return subject


def test_a_subject_that_moves_its_traffic_is_moved_one_that_tries_is_not() -> None:
    index = ShiftIndex(600.0, 86400.0, 12)
    t = 1_000_000.0
    for i in range(20):  # history: an hour on the old model, for both
        for who in ("mover", "taster"):
            index.add(who, "old", t + i * 180, alone)
    t += 3 * 3600
    for i in range(6):
        index.add("mover", "new", t + i * 60, alone)
        index.add("taster", "new" if i == 0 else "old", t + i * 60, alone)
    now = t + 400
    mover = index.read("mover", "new", now, "mover")
    taster = index.read("taster", "new", now, "taster")
    assert mover["moved"] and mover["prior_share"] == 0.0 and mover["recent_share"] == 1.0
    assert mover["prior_requests"] == 20 and mover["subjects_moved"] == 1
    assert not taster["moved"] and taster["recent_share"] == pytest.approx(2 / 7, abs=1e-3)
    # The old model: no move.
    assert not index.read("mover", "old", now, "mover")["moved"]


def test_no_history_is_no_move_and_moves_expire() -> None:
    index = ShiftIndex(600.0, 7200.0, 12)
    for i in range(10):
        index.add("fresh", "new", 100.0 + i, alone)
    assert not index.read("fresh", "new", 200.0, "fresh")["moved"]
    assert index.read("fresh", "new", 200.0, "fresh")["recent_share"] == 1.0
    for i in range(6):
        index.add("s", "old", 1000.0 + i * 60, alone)  # history, over ten minutes earlier
    for i in range(2):
        index.add("s", "new", 3000.0 + i, alone)
    assert not index.read("s", "new", 3010.0, "s")["moved"]  # two requests: not yet
    for i in range(2):
        index.add("s", "new", 3002.0 + i, alone)
    assert index.read("s", "new", 3010.0, "s")["moved"]
    index.maintain(3000.0 + 7300.0, alone)
    assert not index.read("s", "new", 3000.0 + 7300.0, "s")["moved"]
    assert index.stats()["shift_moved"] == 0


def test_moved_subjects_are_counted_per_behavioural_cluster() -> None:
    index = ShiftIndex(600.0, 86400.0, 12)
    roots = {"a": "a", "b": "a", "c": "a", "d": "d"}
    for who in roots:
        for i in range(6):
            index.add(who, "old", 1000.0 + i, roots.__getitem__)
        for i in range(3):
            index.add(who, "new", 5000.0 + i, roots.__getitem__)
    assert index.read("b", "new", 5010.0, "a")["cluster_moved"] == 3
    assert index.read("d", "new", 5010.0, "d")["cluster_moved"] == 1
    # Clusters merged: maintain recounts with the new roots.
    index.maintain(5020.0, lambda s: "a")
    assert index.read("d", "new", 5020.0, "a")["cluster_moved"] == 4


def test_the_model_travels_on_the_wire() -> None:
    obs = Observation(1.5, "s", 1, model="new-model")
    assert Observation.from_wire(obs.to_wire()) == obs
    # A 14-item observation of an earlier gateway: no model.
    assert Observation.from_wire(obs.to_wire()[:14]).model is None
    with pytest.raises(ValueError):
        Observation.from_wire([*obs.to_wire()[:14], 7])


def body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}]}


async def test_the_stage_reads_the_shift_of_the_requested_model() -> None:
    now = [1_000_000.0]
    state = SignalState({"10m": 600.0, "1h": 3600.0, "24h": 86400.0}, "1h")
    stage = SignalStage(MemorySignalStore(state), clock=lambda: now[0])
    who = Subject(id="s1", tier="pro", kyc_level="government_id", account_age_days=300)
    for _ in range(8):
        ctx = await stage.inspect(who, NET, body("old"), model="old")
        stage.observe(ctx, Decision(allow=True))
        now[0] += 120
    now[0] += 3600
    shifts = []
    for _ in range(4):
        ctx = await stage.inspect(who, NET, body("new"), model="new")
        shifts.append(ctx.document["model_shift"])
        stage.observe(ctx, Decision(allow=True))
        now[0] += 30
    # Moved once three requests of the recent window were on the new model.
    assert shifts[0]["model"] == "new" and not shifts[2]["moved"]
    assert shifts[3]["moved"] and shifts[3]["prior_requests"] == 8
    assert ctx.signals.model_shift.moved
    assert state.stats()["shift_moved"] == 1


def test_maintenance_in_slices_forgets_idle_and_evicted_subjects_and_keeps_the_rest() -> None:
    index = ShiftIndex(600.0, 86400.0, 12)
    t = 1_000_000.0
    for i in range(200):
        index.add(f"s{i}", "old", t, alone)
    index.add("evicted", "old", t + 90_000, alone)
    index.add("active", "old", t + 90_000, alone)
    slices = list(index.maintenance(t + 90_100, alone, frozenset({"evicted"}), chunk=64))
    assert len(slices) == 4  # 202 subjects, 64 at a time: the loop can run in between
    # The 200 idle for a day and the evicted one are forgotten; the active one stays.
    assert index.stats()["shift_subjects"] == 1
    assert index.read("active", "old", t + 90_100, "active")["prior_requests"] == 0


def bucketed_count(
    requests: list[tuple[float, str]], now: float, seconds: float, model: str | None
) -> int:
    """Brute force: the requests (of ``model``; all for None) in the bucketed window at ``now``."""
    size = seconds / 12
    oldest = int(now // size) - 12
    return sum(1 for at, m in requests if int(at // size) > oldest and model in (None, m))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1.5 * 86400), st.sampled_from(["a", "b", "c", ""])
        ),
        max_size=40,
    ),
    st.sampled_from("abcd"),
    st.floats(min_value=0, max_value=900),
)
@example(raw=[(0.0, ""), (60.0, ""), (120.0, "a")], asked="a", later=0.0)
def test_shares_match_a_brute_force_count_whatever_the_models(
    raw: list[tuple[float, str]], asked: str, later: float
) -> None:
    # A subject calling one model keeps only its totals; a second model splits them by
    # model. Either way the shares read are those of counting every request by model.
    requests = sorted(raw)
    index = ShiftIndex(600.0, 86400.0, 12, min_prior=10**9)
    for at, model in requests:
        index.add("s", model, 1_000_000.0 + at, alone)
    now = 1_000_000.0 + (requests[-1][0] if requests else 0.0) + later
    shifted = [(1_000_000.0 + at, m) for at, m in requests]
    recent_on = bucketed_count(shifted, now, 600.0, asked)
    recent_all = bucketed_count(shifted, now, 600.0, None)
    prior_on = bucketed_count(shifted, now, 86400.0, asked) - recent_on
    prior_all = bucketed_count(shifted, now, 86400.0, None) - recent_all
    doc = index.read("s", asked, now, "s")
    assert doc["recent_share"] == round((recent_on + 1) / (recent_all + 1), 4)
    assert doc["prior_share"] == round(prior_on / prior_all if prior_all else 0.0, 4)
    assert doc["prior_requests"] == prior_all
