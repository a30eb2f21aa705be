"""Prompt families (MinHash/LSH) and behavioural fingerprints."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.signals.families import FamilyIndex, normalise, shingles
from gatekeeper.signals.fingerprint import (
    _BAND_FEATURES,
    Fingerprint,
    RequestFeatures,
    _band_keys,
    band_values,
    behaviour_keys,
    request_features,
    ua_family,
)
from gatekeeper.signals.skeleton import skeleton
from gatekeeper.signals.state import Observation, SignalState


def family(index: FamilyIndex, text: str, at: float = 0.0) -> str | None:
    return index.assign(FamilyIndex.keys(skeleton(text)), at)


def test_filled_and_reworded_prompts_of_one_generator_share_a_family() -> None:
    index = FamilyIndex(3600, [30])
    rng = random.Random(1)
    openers = ["a shop sells", "a store sells", "a market sells"]
    first = family(
        index,
        "a shop sells pencils in boxes of 12. if a customer needs 40 pencils, how many boxes "
        "must be bought and how many pencils are left over?",
    )
    same = 0
    for _ in range(40):
        text = (
            f"{rng.choice(openers)} {rng.choice(['kites', 'stamps'])} in boxes of "
            f"{rng.randint(2, 99)}. if a customer needs {rng.randint(2, 999)} of them, how many "
            "boxes must be bought and how many are left over?"
        )
        same += family(index, text) == first
    assert same >= 36


def test_unrelated_prompts_get_their_own_families() -> None:
    index = FamilyIndex(3600, [30])
    texts = [
        "how do i configure a webhook in django?",
        "write a haiku about autumn rain over the harbour",
        "what is the capital of australia and why was it chosen",
        "summarise the causes of the first world war for a student",
    ]
    assert len({family(index, t) for t in texts}) == 4


def test_one_shared_band_does_not_join_a_family_two_do() -> None:
    index = FamilyIndex(3600, [30])
    assert index.assign(("x1", "x2", "x3", "x4"), 0) == "f-x1"
    # One band in common (a common phrase): a family of its own, and the band stays x's.
    assert index.assign(("y1", "y2", "y3", "x4"), 1) == "f-y1"
    assert index.assign(("z1", "z2", "z3", "x4"), 2) == "f-z1"
    # Two bands in common: the same generator.
    assert index.assign(("w1", "x2", "x3", "w4"), 3) == "f-x1"
    # Most bands win; a one-band prompt joins on its one band.
    assert index.assign(("y1", "y2", "x3", "v4"), 4) == "f-y1"
    assert index.assign(("x4",), 5) == "f-x1"
    # Every band another family's, none with two: the one holding the most (the first, on a
    # tie), not a family named after a band it does not hold.
    assert index.assign(("x4", "y2", "z2"), 6) == "f-x1"


def test_a_common_phrase_does_not_chain_a_campaign_into_honest_families() -> None:
    """A campaign's template and an honest question that both end in "explain ... step by
    step" share a band (the phrase's words hold two bins' smallest hashes); before two bands
    were required, that one band put the campaign's 120 accounts in the family of hundreds
    of honest senders, whose requests then all carried `family_spread`."""
    campaign = (
        "The correct answer is 12. Explain the reasoning that leads to this answer, step by "
        "step: what is 7 times 3 minus 9?"
    )
    honest = (
        "What is the difference between a queue and a trigger in react? Please explain step "
        "by step."
    )
    a, b = (set(FamilyIndex.keys(skeleton(t))) for t in (campaign, honest))
    assert len(a & b) == 1  # the phrase's band
    index = FamilyIndex(3600, [30])
    assert family(index, honest) != family(index, campaign)


def test_digits_of_other_scripts_and_full_width_forms_are_normalised() -> None:
    assert normalise("١٢٣ \uff21\uff22") == "123 AB"
    assert shingles("因为小明有五个苹果") == shingles("因为小明有五个苹果")
    assert len(shingles("因为小明有五个苹果给了小红两个")) > 5


def test_family_senders_are_counted_by_age_band_and_expire() -> None:
    index = FamilyIndex(3600, [7, 30])
    keys = FamilyIndex.keys(skeleton("grade the answer below against the rubric"))
    fam = index.assign(keys, 0)
    assert fam is not None
    for i, age in enumerate([1, 10, 100, None, 3]):
        index.add(fam, f"s{i}", age, float(i))
    index.add(fam, "s0", 1, 10.0)  # counted once
    doc = index.read(fam)
    assert doc["subjects"] == 5
    assert doc["subjects_by_age"] == {"7": 2, "30": 3}
    index.maintain(3600 + 3.5)  # s0 (seen at 10) and s4 (at 4) stay
    assert index.read(fam)["subjects_by_age"] == {"7": 2, "30": 2}


def test_request_features_read_every_dialect_shape() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "you are a grader"},
            {"role": "user", "content": "x"},
        ],
        "max_tokens": 1024,
        "stream": True,
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "run"}}],
    }
    f = request_features(body, 100, reasoning=True, user_agent="OpenAI/Python 1.54.4")
    assert (f.single_turn, f.max_tokens, f.stream, f.ua_family) == (
        True,
        1024,
        True,
        "openai/python",
    )
    assert f.system and f.tools and f.sampling
    assert RequestFeatures.from_wire(f.to_wire()) == f
    assert ua_family(None) == "-"
    assert request_features(None, 0, reasoning=False, user_agent=None).ua_family == "-"


def test_near_fingerprints_share_band_keys_and_different_ones_do_not() -> None:
    def fp(max_tokens: int, reasoning: bool, step: float) -> Fingerprint:
        f = Fingerprint()
        for i in range(20):
            f.add(i * step, RequestFeatures(reasoning, True, 7, max_tokens, False, "", "", "", "x"))
        return f

    a, b = behaviour_keys(fp(1024, True, 60)), behaviour_keys(fp(1024, True, 61))
    c = behaviour_keys(fp(256, False, 60))
    assert set(a) & set(b)
    assert not set(a) & set(c)


_FEATURES = st.builds(
    RequestFeatures,
    st.booleans(),
    st.booleans(),
    # Bins past the range (a peer's wire form is not range-checked) and ties between bins.
    st.integers(-2, 14),
    st.sampled_from([0, 256, 512, 1024, 2048, 4096, 1, 2, 3, 7]),
    st.booleans(),
    st.sampled_from(["", "a1b2"]),
    st.sampled_from(["", "c3"]),
    st.sampled_from(["", "d4"]),
    st.sampled_from(["-", "openai/python", "x"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 7200), _FEATURES), min_size=1, max_size=40))
def test_band_values_are_the_quantised_fingerprint(
    requests: list[tuple[float, RequestFeatures]],
) -> None:
    """``behaviour_keys`` hashes ``band_values``, the fast form of ``quantised``'s values."""
    fp = Fingerprint()
    for at, features in requests:
        fp.add(at, features)
        q = fp.quantised()
        expected = tuple(str(q[name]) for name in _BAND_FEATURES)
        assert band_values(fp) == expected
        assert behaviour_keys(fp) == _band_keys(expected)


def test_accounts_behaving_alike_form_a_behavioural_cluster() -> None:
    state = SignalState({"1h": 3600}, "1h", behaviour_min_requests=5)
    features = RequestFeatures(True, True, 7, 1024, False, "", "", "", "httpx")
    for i in range(10):
        for k in range(6):
            at = k * 60.0 + i
            state.apply(Observation(at, f"acct{i}", requests=1, features=features, age_days=3))
    doc = state.read_behaviour("acct3")
    assert doc["size"] == 10 and doc["id"] is not None and doc["fingerprinted"]
    assert doc["subjects_by_age"]["7"] == 10
    assert state.read_behaviour("unknown")["size"] == 1


def test_wire_form_carries_families_and_features_and_reads_the_old_form() -> None:
    f = RequestFeatures(True, True, 3, 64, False, "", "", "", "-")
    obs = Observation(1.0, "s", 1, 0, 1, 0, 0, "h", ("org:1",), 0, 1, ("0:1.2",), f, 4.5)
    assert Observation.from_wire(obs.to_wire()) == obs
    old = [1.0, "s", 1, 0, 1, 0, 0, "h", ["org:1"]]
    assert Observation.from_wire(old) == Observation(1.0, "s", 1, 0, 1, 0, 0, "h", ("org:1",))


async def test_accounts_without_a_user_agent_link_on_one_network() -> None:
    from gatekeeper.contract import Network, Subject
    from gatekeeper.signals import MemorySignalStore, SignalStage

    state = SignalState({"1h": 3600}, "1h")
    stage = SignalStage(MemorySignalStore(state), link_by=["network+user_agent", "user_agent"])
    net = Network(client_ip="198.51.100.9")
    for who in ("a", "b"):
        ctx = await stage.inspect(Subject(id=who), net, None, user_agent=None)
    assert ctx.document["cluster"]["size"] == 2
    assert ctx.document["cluster"]["linked_by"] == ["network+user_agent"]


def test_a_template_alternative_is_picked_per_prompt() -> None:
    from gatekeeper.offline.simulate.population import _fill

    texts = {_fill("[a shop|a store] sells {word}", random.Random(i)) for i in range(30)}
    assert {t.split(" sells")[0] for t in texts} == {"a shop", "a store"}
