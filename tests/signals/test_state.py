"""The in-process signal state: usage, templates and account clusters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.signals import Observation, SignalState, cluster_id
from gatekeeper.signals.families import FamilyIndex
from gatekeeper.signals.fingerprint import RequestFeatures

WINDOWS = {"10m": 600.0, "1h": 3600.0}


def state() -> SignalState:
    return SignalState(WINDOWS, "1h", buckets=12)


def request(
    subject: str, at: float, *, links: tuple[str, ...] = (), template: str = "t", reasoning: int = 1
) -> Observation:
    return Observation(
        at, subject, requests=1, reasoning_requests=reasoning, template=template, links=links
    )


def test_usage_per_window_and_reasoning_share() -> None:
    s = state()
    for i in range(4):
        s.apply(request("a", 100.0 * i, reasoning=int(i % 2 == 0)))
    s.apply(Observation(350.0, "a", tokens=900, reasoning_tokens=120))
    own, cluster, _ = s.read("a", "t", (), 550.0)
    assert own.requests == {"10m": 4, "1h": 4}
    assert own.tokens["1h"] == 900 and own.reasoning_tokens["1h"] == 120
    assert own.reasoning_share == 0.5
    assert own.template_count == 4
    later, _, _ = s.read("a", "t", (), 760.0)
    assert later.requests == {"10m": 2, "1h": 4}  # the first two left the 10-minute window
    assert (cluster.size, cluster.id) == (1, cluster_id("a"))


def test_template_repetition_counts_this_prompt_too() -> None:
    s = state()
    for i in range(3):
        s.apply(request("a", float(i), template="x"))
    s.apply(request("a", 5.0, template="y"))
    _, _, repetition = s.read("a", "x", (), 10.0)
    assert repetition == pytest.approx(4 / 5)  # 3 earlier "x" plus this one, of 5
    _, _, first = s.read("new", "x", (), 10.0)
    assert first == 1.0  # a first prompt is all template: policies also need a count


def test_shared_payment_links_subjects_into_one_cluster() -> None:
    s = state()
    s.apply(request("b", 1.0, links=("payment:1",)))
    s.apply(request("c", 2.0, links=("payment:1", "org:c")))
    s.apply(request("a", 3.0, links=("org:c",)))  # linked to b through c
    own, cluster, _ = s.read("b", "t", ("payment:1",), 4.0)
    assert cluster.size == 3
    assert cluster.id == cluster_id("a")  # the smallest member names the cluster
    assert cluster.requests["1h"] == 3 and own.requests["1h"] == 1
    assert cluster.template_count == 3
    assert cluster.linked_by == ["payment"]


def test_a_cluster_keeps_the_usage_members_had_before_they_linked() -> None:
    s = state()
    for i in range(5):
        s.apply(request("x", float(i)))
    s.apply(request("y", 10.0, links=("payment:9",)))
    s.link("x", ("payment:9",), 11.0)
    _, cluster, _ = s.read("x", "t", (), 12.0)
    assert (cluster.size, cluster.requests["1h"]) == (2, 6)


def test_links_expire_and_clusters_split() -> None:
    s = state()
    s.apply(request("a", 0.0, links=("payment:1",)))
    s.apply(request("b", 0.0, links=("payment:1",)))
    s.apply(request("b", 3000.0, links=("org:b",)))
    s.apply(request("c", 3000.0, links=("org:b",)))
    assert s.read("c", None, (), 3000.0)[1].size == 3
    s.maintain(3700.0)  # a's and b's payment link is over an hour old
    assert s.read("a", None, (), 3700.0)[1].size == 1
    _, cluster, _ = s.read("c", None, (), 3700.0)
    assert (cluster.size, cluster.id) == (2, cluster_id("b"))
    assert cluster.requests["1h"] == 2  # recounted from b's and c's own usage


def test_idle_subjects_are_forgotten() -> None:
    s = state()
    s.apply(request("a", 0.0))
    s.apply(request("b", 3500.0))
    s.maintain(3700.0)
    assert s.stats()["subjects"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        ["x"] * 9,
        [1.0, "s", 1, 0, 0, 0, 0, None, "links"],
        [1.0, "s", 1, 0, True, 0, 0, None, []],
        [1.0, "s", 1, 0, 0, 0, 0, 7, []],
    ],
    ids=["null", "empty", "strings", "links-not-list", "bool-amount", "template-not-str"],
)
def test_malformed_wire_observations_are_rejected(raw: object) -> None:
    with pytest.raises(ValueError):
        Observation.from_wire(raw)


def test_wire_round_trip() -> None:
    obs = Observation(1.5, "s", 1, 2, 3, 4, 5, "h", ("payment:1",))
    assert Observation.from_wire(obs.to_wire()) == obs


links = st.lists(st.tuples(st.integers(0, 11), st.integers(0, 5)), max_size=30)


@settings(max_examples=60)
@given(links)
def test_clusters_are_the_connected_components(pairs: list[tuple[int, int]]) -> None:
    s = state()
    for subject, key in pairs:
        s.link(f"s{subject:02d}", (f"payment:{key}",), 1.0)
    # Brute force: subjects sharing a key, transitively.
    groups: list[set[str]] = []
    for key in {k for _, k in pairs}:
        members = {f"s{subject:02d}" for subject, k in pairs if k == key}
        touching = [g for g in groups if g & members]
        merged = members.union(*touching)
        groups = [g for g in groups if not g & members] + [merged]
    for group in groups:
        for member in group:
            _, cluster, _ = s.read(member, None, (), 2.0)
            assert cluster.size == len(group)
            assert cluster.id == cluster_id(min(group))


# The identity caches (FamilyIndex.assign, SignalState.link) and eviction past max_subjects.


def test_family_cache_answers_each_prompt_and_not_a_stale_one() -> None:
    f = FamilyIndex(3600.0, [30.0])
    a, b = ("a1", "shared-ab", "shared-ab2"), ("b1", "b2", "b3")
    assert f.assign(a, 10.0) == "f-a1"
    assert f.assign(b, 10.0) == "f-b1"  # another prompt at the same time
    assert f.assign(a, 10.0) == "f-a1"
    late = ("c1", "shared-ab", "shared-ab2")  # joins a's family through two shared bands
    assert f.assign(late, 20.0) == "f-a1"
    f.maintain(20.0 + 3601.0)  # every band is forgotten
    assert f.assign(late, 20.0) == "f-c1"  # the same tuple and time: answered afresh


def test_family_cache_never_trusts_a_list_changed_in_place() -> None:
    f = FamilyIndex(3600.0, [30.0])
    keys = ["a1", "a2"]
    assert f.assign(keys, 10.0) == "f-a1"
    keys[:] = ["b1", "b2"]
    assert f.assign(keys, 10.0) == "f-b1"


def test_link_cache_relinks_after_maintain() -> None:
    s = state()
    key = ("payment:1",)
    s.link("a", key, 0.0)
    s.link("b", key, 0.0)
    assert s.read("b", None, (), 0.0)[1].size == 2
    s.maintain(4000.0)  # the links are over an hour old: forgotten
    assert s.read("b", None, (), 0.0)[1].size == 1
    s.link("b", key, 0.0)  # the call the cache saw last before maintain: recorded again
    s.link("a", key, 0.0)
    assert s.read("b", None, (), 0.0)[1].size == 2


def test_same_time_requests_of_two_subjects_both_link() -> None:
    s = state()
    key = ("payment:1",)
    s.link("a", key, 5.0)
    s.link("b", key, 5.0)
    s.apply(request("a", 5.0, links=key))  # observe after inspect: the cache skips nothing
    s.apply(request("b", 5.0, links=key))
    _, cluster, _ = s.read("a", None, (), 6.0)
    assert (cluster.size, cluster.requests["1h"]) == (2, 2)


FEATURES = RequestFeatures(True, True, 7, 1024, False, "", "", "", "x")


def active(subject: str, at: float, *, links: tuple[str, ...] = ()) -> Observation:
    return Observation(
        at, subject, requests=1, links=links, bands=("fam-1", "fam-2"), features=FEATURES
    )


def test_subjects_past_the_bound_are_forgotten_then_dropped_from_the_indexes() -> None:
    s = SignalState(WINDOWS, "1h", buckets=12, max_subjects=8)
    s.apply(active("s0", 0.0, links=("payment:1",)))
    for i in range(1, 8):
        s.apply(active(f"s{i}", float(i), links=("payment:1",) if i == 7 else ()))
    assert s.read("s7", None, (), 8.0)[1].size == 2
    s.apply(active("s8", 8.0))  # the ninth: s0, the least recently active, goes
    stats = s.stats()
    assert (stats["subjects"], stats["fingerprints"], stats["evicted_subjects"]) == (8, 8, 1)
    assert s.read("s0", None, (), 9.0)[0].requests["1h"] == 0  # its usage is gone
    assert s.read_family("f-fam-1")["subjects"] == 9  # the indexes drop it at maintain
    s.maintain(9.0)
    assert s.read("s7", None, (), 9.0)[1].size == 1
    assert s.read_family("f-fam-1")["subjects"] == 8
    assert s.stats()["evicted_subjects"] == 0


def test_a_subject_active_again_after_eviction_stays() -> None:
    s = SignalState(WINDOWS, "1h", buckets=12, max_subjects=8)
    s.apply(active("s0", 0.0, links=("payment:1",)))
    for i in range(1, 8):
        s.apply(active(f"s{i}", float(i), links=("payment:1",) if i == 7 else ()))
    s.apply(active("s8", 8.0))  # evicts s0
    s.apply(active("s0", 9.0, links=("payment:1",)))  # back: evicts s1, and (a quarter of
    # the bound forgotten) runs maintain at once
    assert s.stats()["evicted_subjects"] == 0
    own, cluster, _ = s.read("s0", None, (), 10.0)
    assert own.requests["1h"] == 1  # counted afresh from its return
    assert cluster.size == 2  # still linked with s7
    assert s.read_family("f-fam-1")["subjects"] == 8  # s1 left, s0 stayed
    assert s.stats()["subjects"] == 8


def test_the_bound_holds_under_a_stream_of_new_subjects() -> None:
    s = SignalState(WINDOWS, "1h", buckets=12, max_subjects=50)
    for i in range(1000):
        s.apply(active(f"n{i}", i * 0.5, links=(f"payment:{i % 7}",)))
    stats = s.stats()
    assert stats["subjects"] == 50 and stats["fingerprints"] <= 50
    s.maintain(500.0)
    assert s.read_family("f-fam-1")["subjects"] == 50
    assert s.read("n999", None, (), 500.0)[1].size <= 50
